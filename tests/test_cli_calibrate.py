"""`taskloom calibrate`: labelled examples in, a calibration file and its table out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskloom.calibration import Calibration
from tests.test_cli import cli

CLASSIFY = {"kind": "classify", "inputs": {"text": "my parcel is late", "labels": ["a", "b"]}}
EXTRACT = {
    "kind": "extract",
    "inputs": {"text": "Maria here, order A-1042", "copy": True},
    "output": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "order_id": {"type": ["string", "null"]}},
        "required": ["name", "order_id"],
    },
}


def examples(tmp_path: Path, n: int = 6) -> str:
    lines = []
    for i in range(n):
        lines.append({"step": CLASSIFY, "expected": "a" if i % 2 else {"label": "b"}})
        lines.append({"step": EXTRACT, "expected": {"name": "Maria", "order_id": "A-1042"}})
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


def test_calibrate_writes_a_calibration_and_prints_the_table(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    code, stdout, err = cli(
        capsys,
        "calibrate",
        "--examples",
        examples(tmp_path),
        "--model",
        "scripted",
        "--out",
        str(out),
    )
    assert code == 0, err
    written = Calibration.model_validate_json(out.read_text())
    assert written.kinds["classify"].examples == 6
    assert written.kinds["extract"].examples == 12  # two fields each
    assert "coverage  precision" in stdout and "classify: 6 answers" in stdout
    assert f"wrote {out}" in err


def test_calibrate_writes_to_taskloom_home_by_default(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, "calibrate", "--examples", examples(tmp_path, 2), "--model", "scripted"
    )
    assert code == 0, err
    assert "calibration.json" in err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "can't read examples file"),
        ("", "has no examples"),
        ('{"step": {"kind": "extract"}}\n', 'each line is {"step"'),
        ("nope\n", ":1: not JSON"),
    ],
)
def test_bad_examples_exit_2_with_one_line(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    says: str,
) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    code, _, err = cli(capsys, "calibrate", "--examples", str(path), "--model", "scripted")
    assert code == 2
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_worker_with_a_missing_calibration_file_exits_2_at_once(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.json")
    code, _, err = cli(capsys, "worker", "--model", "scripted", "--calibration", missing)
    assert code == 2
    assert f"calibration file {missing!r} does not exist" in err
    assert "taskloom calibrate" in err and len(err.strip().splitlines()) == 1
