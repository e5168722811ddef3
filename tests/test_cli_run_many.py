"""`taskloom run TARGET --inputs FILE.jsonl`: one run a line, one JSON record a line in
input order; a bad file is one line naming the file and line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import cli

ROOT = Path(__file__).resolve().parent.parent
PLAN = str(ROOT / "examples" / "triage.json")
INPUTS = json.loads((ROOT / "examples" / "triage_input.json").read_text())


def test_each_line_is_a_run_and_each_record_a_line_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, taskloom_home: Path
) -> None:
    lines = [{**INPUTS, "email": f"Hi, I am customer {i}. {INPUTS['email']}"} for i in range(3)]
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "\n")  # a blank line at the end
    code, out, err = cli(
        capsys, "run", PLAN, "--inputs", str(path), "--inline", "--model", "scripted"
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["inputs"] for r in records] == lines
    assert {r["status"] for r in records} == {"done"}


BAD_FILES = {
    "missing": (None, "can't read inputs file {path}: No such file or directory"),
    "bad_json": (
        '{"email": "a"}\n{"email": \n',
        "{path}:2: not valid JSON (column 10: Expecting value)",
    ),
    "not_an_object": ('{"email": "a"}\n["a"]\n', "{path}:2: an array, not an object"),
    "a_string": ('"hello"\n', "{path}:1: a string, not an object"),
    "empty": ("", "inputs file {path} is empty; write one JSON object a line"),
    "only_blank": ("\n\n", "inputs file {path} is empty"),
    "blank_in_between": ('{"email": "a"}\n\n{"email": "b"}\n', "{path}:2: blank line"),
    "nan": ('{"x": NaN}\n', "{path}:1 is not valid JSON: NaN is not a JSON number"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_inputs_file_is_one_line_naming_file_and_line(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, taskloom_home: Path
) -> None:
    content, message = BAD_FILES[case]
    path = tmp_path / "inputs.jsonl"
    if content is not None:
        path.write_text(content)
    code, out, err = cli(capsys, "run", PLAN, "--inputs", str(path), "--inline")
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message.format(path=path) in err


def test_an_inputs_line_the_plan_cannot_use_names_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, taskloom_home: Path
) -> None:
    path = tmp_path / "inputs.jsonl"
    path.write_text(json.dumps(INPUTS) + "\n" + json.dumps({"kb": []}) + "\n")
    code, out, err = cli(capsys, "run", PLAN, "--inputs", str(path), "--inline")
    assert code == 2 and out == ""
    assert "inputs 2: " in err and "email" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--input", "{}"], ["--goal", "say hi"], ["--run-id", "x"]])
def test_inputs_goes_with_none_of_input_goal_and_run_id(
    flag: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, taskloom_home: Path
) -> None:
    path = tmp_path / "inputs.jsonl"
    path.write_text(json.dumps(INPUTS) + "\n")
    code, _, err = cli(capsys, "run", PLAN, "--inputs", str(path), *flag)
    assert code == 2
    assert "--inputs runs TARGET once a line" in err and "Traceback" not in err
