"""`taskloom model path`: the GGUF file the local model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloom.chat.model_file import GGUF_MAGIC
from tests.test_cli import cli


def test_model_path_prints_the_default_models_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKLOOM_MODEL", raising=False)
    code, out, err = cli(capsys, "model", "path")
    assert code == 0, err
    path = Path(out.strip())
    assert path.suffix == ".gguf" and path.read_bytes()[:4] == GGUF_MAGIC


def test_model_path_prints_the_named_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "big.gguf"
    gguf.write_bytes(GGUF_MAGIC + b"\0" * 16)
    monkeypatch.setenv("TASKLOOM_MODEL", str(gguf))
    code, out, _ = cli(capsys, "model", "path")
    assert (code, out.strip()) == (0, str(gguf))
    other = tmp_path / "other.gguf"
    other.write_bytes(GGUF_MAGIC)
    code, out, _ = cli(capsys, "model", "path", "--model", str(other))
    assert (code, out.strip()) == (0, str(other))


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("missing.gguf", "does not exist: pass --model PATH or set TASKLOOM_MODEL"),
        ("not_gguf.txt", "is not a GGUF file"),
        ("scripted", "the scripted model has no file"),
    ],
)
def test_a_bad_model_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, says: str
) -> None:
    (tmp_path / "not_gguf.txt").write_text("hello")
    model = name if name == "scripted" else str(tmp_path / name)
    code, out, err = cli(capsys, "model", "path", "--model", model)
    assert code == 2 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1
