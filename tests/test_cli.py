"""The CLI contract: exit codes, one-line errors, no tracebacks, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskloom.cli import main

TOOLS = str(Path(__file__).parent / "workflows" / "crashy_tools.py")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def tool_plan(*steps: dict[str, Any], output: Any = None) -> dict[str, Any]:
    return {"version": 1, "steps": list(steps), "output": output}


def work(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "tool", "tool": "work", "inputs": {"name": step_id}, **extra}


BAD_PLANS: dict[str, tuple[Any, str]] = {
    "malformed_json": ('{"version": 1, "steps": [', "is not valid JSON (line 1, column 26"),
    "cycle": (
        tool_plan(work("a", after=["b"]), work("b", after=["a"])),
        "step 'a': cycle a → b → a",
    ),
    "dangling_reference": (
        tool_plan({"id": "a", "kind": "generate", "inputs": {"instruction": "$nope.text"}}),
        "step 'a': $nope.text references unknown step 'nope'",
    ),
    "unknown_kind": (
        tool_plan({"id": "a", "kind": "teleport", "inputs": {}}),
        "step 'a': unknown kind 'teleport'",
    ),
    "duplicate_id": (tool_plan(work("a"), work("a")), "step 'a': duplicate id"),
    "too_many_steps": (
        tool_plan(*(work(f"s{i}") for i in range(65))),
        "65 steps is more than the limit of 64",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_plans_exit_2_with_one_line(
    case: str, command: str, tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, expected = BAD_PLANS[case]
    code, out, err = cli(capsys, command, write(tmp_path, f"{case}.json", content))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("taskloom: error: ")
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("input_arg", "expected"),
    [
        ("{not json", "--input is not valid JSON (line 1, column 2"),
        ("[1, 2]", "--input must be a JSON object, got list"),
        ("@/nonexistent/in.json", "--input: can't read /nonexistent/in.json"),
    ],
)
def test_bad_input_exits_2(
    input_arg: str,
    expected: str,
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = write(tmp_path, "p.json", tool_plan(work("a")))
    code, _, err = cli(capsys, "run", plan, "--tools", TOOLS, "--inline", "--input", input_arg)
    assert code == 2 and err.count("\n") == 1
    assert expected in err


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("missing.py:flow", "no such file missing.py"),
        ("examples/triage.py:nothing", "examples/triage.py has no 'nothing'"),
        ("examples/triage.py:lookup_order", "is a Tool, not a workflow"),
        ("no_such_module_xyz:flow", "can't import module 'no_such_module_xyz'"),
        ("just-a-word", "is not a target"),
        ("missing.json", "can't read plan missing.json"),
    ],
)
def test_bad_targets_exit_2(
    target: str, expected: str, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "run", target, "--inline")
    assert code == 2 and err.count("\n") == 1
    assert expected in err


def test_validate_ok_and_missing_input_reference(
    taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "validate", "examples/triage.json")
    assert code == 0 and "valid plan, 5 steps" in out
    code, _, err = cli(capsys, "validate", "examples/triage.json", "--input", '{"email": "x"}')
    assert code == 2 and "step 'docs': $input.kb is not in the run's inputs" in err


def test_validate_json_reports_the_result_and_every_problem(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "validate", "examples/triage.json", "--json")
    assert code == 0 and not err
    assert json.loads(out) == {
        "file": "examples/triage.json",
        "valid": True,
        "steps": 5,
        "problems": [],
        "error": None,
    }
    bad = write(tmp_path, "bad.json", tool_plan(work("a", after=["zz"]), work("a")))
    code, out, err = cli(capsys, "validate", bad, "--json")
    result = json.loads(out)
    assert code == 2 and not err and result["valid"] is False and result["steps"] is None
    assert result["error"] == "PlanValidationError"
    assert result["problems"] == [
        "step 'a': duplicate id",
        "step 'a': 'after' names unknown step 'zz'",
    ]
    code, out, _ = cli(capsys, "validate", str(tmp_path / "missing.json"), "--json")
    result = json.loads(out)
    assert (
        code == 2 and result["error"] == "TargetError" and "missing.json" in result["problems"][0]
    )


def test_run_json_record_failure_exit_1_and_nothing_lost(
    tmp_path: Path,
    taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TASKLOOM_TEST_COUNTS", str(tmp_path / "counts"))
    good = write(tmp_path, "good.json", tool_plan(work("a"), work("b"), output="$b.name"))
    code, out, _ = cli(
        capsys, "run", good, "--tools", TOOLS, "--inline", "--json", "--run-id", "r1"
    )
    record = json.loads(out)
    assert code == 0 and record["status"] == "done" and record["output"] == "b"
    step_keys = {
        "id",
        "kind",
        "status",
        "attempts",
        "worker",
        "model",
        "queue_ms",
        "run_ms",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
    }
    assert step_keys <= set(record["steps"][0]) and record["totals"]["steps"] == 2

    failing = tool_plan(
        work("a"), {"id": "b", "kind": "tool", "tool": "unregistered", "inputs": {}}
    )
    code, _, err = cli(
        capsys, "run", write(tmp_path, "bad.json", failing), "--tools", TOOLS, "--inline"
    )
    assert code == 1
    assert "tool 'unregistered' is not registered (registered: crash_once, work)" in err
    assert "Traceback" not in err

    # a later bad invocation leaves the earlier run and the input files untouched
    code, _, _ = cli(capsys, "run", good, "--inline", "--input", "{oops")
    assert code == 2
    code, out, _ = cli(capsys, "resume", "r1", "--tools", TOOLS, "--json")
    assert code == 0 and json.loads(out)["output"] == "b"
    assert json.loads(Path(good).read_text())["output"] == "$b.name"


def test_unknown_run_id_exits_2(taskloom_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "resume", "never-was")
    assert code == 2 and "no run 'never-was'" in err


def test_no_traceback_from_a_real_process(tmp_path: Path) -> None:
    bad = write(tmp_path, "cycle.json", BAD_PLANS["cycle"][0])
    proc = subprocess.run(
        [sys.executable, "-m", "taskloom.cli", "validate", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"taskloom: error: {bad}: invalid plan, 1 problem: step 'a': cycle a → b → a"
    ]
    help_proc = subprocess.run(
        [sys.executable, "-m", "taskloom.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert (
        help_proc.returncode == 0 and "run" in help_proc.stdout and "validate" in help_proc.stdout
    )


@pytest.mark.parametrize("extra", [["--inline"], []])
def test_missing_model_file_exits_2_naming_it(
    extra: list[str], taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = "@examples/triage_input.json"
    code, _, err = cli(
        capsys, "run", "examples/triage.json", "--input", inputs, "--model", "/nope.gguf", *extra
    )
    assert code == 2 and err.count("\n") == 1
    assert "model file /nope.gguf does not exist" in err


def test_an_internal_error_exits_70_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from taskloom.cli.app import cli as group

    @group.command("explode-for-test", hidden=True)
    def explode() -> None:
        raise ZeroDivisionError("a bug in taskloom")

    try:
        code, _, err = cli(capsys, "explode-for-test")
    finally:
        del group.commands["explode-for-test"]
    assert code == 70
    assert err.strip().splitlines() == [
        "taskloom: internal error: ZeroDivisionError: a bug in taskloom "
        "(rerun with --debug and report it)"
    ]


def test_version_and_python_dash_m() -> None:
    from importlib.metadata import version

    import taskloom

    shown = subprocess.run(
        [sys.executable, "-m", "taskloom", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (
        shown.returncode == 0 and shown.stdout.strip() == f"taskloom, version {version('taskloom')}"
    )
    assert taskloom.__version__ == version("taskloom")
    helped = subprocess.run(
        [sys.executable, "-m", "taskloom", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "run" in helped.stdout and "worker" in helped.stdout


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_concurrency_below_one_exits_2(
    command: str, tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [write(tmp_path, "p.json", tool_plan(work("a"))), "--inline"] if command == "run" else []
    code, _, err = cli(capsys, command, *args, "--concurrency", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert "--concurrency" in err and "0" in err


def test_a_target_precision_out_of_range_exits_2_with_one_line(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = write(tmp_path, "p.json", tool_plan(work("a")))
    code, _, err = cli(capsys, "run", plan, "--tools", TOOLS, "--inline", "--precision", "1.2")
    assert code == 2 and err.count("\n") == 1 and "--precision" in err
    monkeypatch.setenv("TASKLOOM_TARGET_PRECISION", "0.2")
    code, _, err = cli(capsys, "run", plan, "--tools", TOOLS, "--inline")
    assert code == 2 and err.count("\n") == 1
    assert "TASKLOOM_TARGET_PRECISION" in err and "fix or unset it" in err
