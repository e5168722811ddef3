"""Settings: every field has an environment variable, and secrets never show."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from taskloom.config import Settings, env_var, reveal
from taskloom.errors import ConfigError


def _other_value(name: str) -> tuple[str, Any]:
    """An environment text for the field `name` and the value it must become, never the
    field's default, derived from its type so that a new field is covered without a table."""
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    kind = field.annotation
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))  # X | None → X
    origin = typing.get_origin(kind)
    if kind is SecretStr:
        return "s3cret-value", "s3cret-value"
    if kind is bool:
        return str(not default).lower(), not default
    if kind is int:
        value = (default + 1) if isinstance(default, int) else 300
        return str(value), value
    if kind is float:
        value = default / 2 if default else 0.5
        return str(value), value
    if name == "checkpointer":  # a URL whose scheme is checked
        return "sqlite:///tmp/taskloom-elsewhere.sqlite", "sqlite:///tmp/taskloom-elsewhere.sqlite"
    if kind is str:
        return f"custom-{name}", f"custom-{name}"
    if kind is Path:
        return "/tmp/taskloom-elsewhere", Path("/tmp/taskloom-elsewhere")
    if origin is typing.Literal:
        other = next(a for a in typing.get_args(kind) if a != default)
        return str(other), other
    if origin is dict:
        return json.dumps({"some-model": 0.25}), {"some-model": 0.25}
    if origin is tuple:
        return json.dumps([0.25, 0.75]), (0.25, 0.75)
    if origin is list:
        return json.dumps(["a", "b"]), ["a", "b"]
    raise AssertionError(f"test_config: teach _other_value the type of {name}: {kind}")


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_reads_its_environment_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, expected = _other_value(name)
    assert expected != _plain(Settings.model_fields[name].get_default(call_default_factory=True))
    monkeypatch.setenv(env_var(name), text)
    assert _plain(getattr(Settings.from_env(), name)) == expected


def test_the_endpoint_reads_the_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = Settings.from_env()
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert reveal(settings.openai_api_key) == "sk-test"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_REDIS_URL", "")
    monkeypatch.setenv("TASKLOOM_LEASE_S", "")
    settings = Settings.from_env()
    assert settings.redis_url is None and settings.lease_s == 5.0


def test_a_bad_variable_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_MAX_ATTEMPTS", "three")
    with pytest.raises(ConfigError) as e:
        Settings.from_env()
    assert "TASKLOOM_MAX_ATTEMPTS" in str(e.value) and "\n" not in str(e.value)


def test_a_bad_variable_on_the_cli_exits_2_without_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TASKLOOM_LEASE_S": "soon"}
    plan = Path(__file__).parent.parent / "examples" / "triage.json"
    done = subprocess.run(
        [sys.executable, "-m", "taskloom.cli", "run", str(plan), "--inline"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TASKLOOM_LEASE_S" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_secrets_never_show_in_repr_dumps_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TASKLOOM_SECRET", "hmac-key-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-key-456")
    settings = Settings.from_env().override(lease_s=2.0)
    shown = [repr(settings), str(settings), settings.model_dump_json()]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("taskloom.test").warning("settings %s", settings)
    shown.append(caplog.text)
    for text in shown:
        assert "hmac-key-123" not in text and "sk-key-456" not in text
    assert reveal(settings.secret) == "hmac-key-123"  # still usable where it must be


def test_override_validates_and_names_unknown_options() -> None:
    settings = Settings.from_env()
    assert settings.override(lease_s=1.5, redis_url=None).lease_s == 1.5
    with pytest.raises(ConfigError, match="unknown option lease"):
        settings.override(lease=1.0)
    with pytest.raises(ConfigError, match="route_threshold"):
        settings.override(route_threshold=3.0)
    secret = settings.override(secret="k").secret
    assert isinstance(secret, SecretStr) and reveal(secret) == "k"
