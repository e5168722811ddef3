"""Budgets and escalation on plan and workflow runs, not only on goal runs; goal-only
flags refused on a TARGET run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskloom.cli import main
from taskloom.testing.server import Reply, ScriptedServer

TOOLS = str(Path(__file__).parent.parent / "workflows" / "crashy_tools.py")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def plan_file(tmp_path: Path, *steps: dict[str, Any], output: Any = None) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"version": 1, "steps": list(steps), "output": output}))
    return str(path)


def work(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "tool", "tool": "work", "inputs": {"name": step_id}, **extra}


def steps_by_id(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in record["steps"]}


@pytest.mark.parametrize(
    "flags",
    [
        ("--no-route",),
        ("--no-stream",),
        ("--route-threshold", "0.7"),
        ("--max-replans", "1"),
        ("--local-planner",),
        ("--no-route", "--max-replans", "0"),
    ],
)
def test_goal_only_flags_on_a_target_run_exit_2_naming_them(
    tmp_path: Path,
    taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
) -> None:
    counts = tmp_path / "counts"
    monkeypatch.setenv("TASKLOOM_TEST_COUNTS", str(counts))
    plan = plan_file(tmp_path, work("a"))
    code, out, err = cli(capsys, "run", plan, "--tools", TOOLS, "--inline", *flags)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "only for --goal runs" in lines[0], err
    for flag in flags:
        if flag.startswith("--"):
            assert flag in lines[0]
    assert not counts.exists()  # nothing ran


@pytest.mark.parametrize("where", [("--inline",), ("--workers", "1")], ids=["inline", "embedded"])
def test_max_steps_bounds_a_plan_run(
    tmp_path: Path,
    taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: tuple[str, ...],
) -> None:
    counts = tmp_path / "counts"
    monkeypatch.setenv("TASKLOOM_TEST_COUNTS", str(counts))
    plan = plan_file(
        tmp_path, work("a"), work("b", after=["a"]), work("c", after=["b"]), output="$c.name"
    )
    code, out, err = cli(
        capsys,
        "run",
        plan,
        "--tools",
        TOOLS,
        *where,
        "--model",
        "scripted",
        "--json",
        "--max-steps",
        "2",
    )
    record = json.loads(out)
    assert code == 1, err
    steps = steps_by_id(record)
    assert [steps[s]["status"] for s in "abc"] == ["done", "done", "failed"]
    assert steps["c"]["error"]["type"] == "BudgetExceededError"
    assert record["budget"]["stopped"] == {"budget": "max_steps", "where": "step c"}
    assert counts.read_text().split() == ["a", "b"]  # c never executed


def test_max_cost_counts_slm_steps_of_a_plan_run(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    say = {"instruction": "say something about ${a.text}"}
    plan = plan_file(
        tmp_path,
        {"id": "a", "kind": "generate", "inputs": {"instruction": "say hello"}},
        {"id": "b", "kind": "generate", "inputs": say},
        output="$b.text",
    )
    args = ("run", plan, "--inline", "--model", "scripted", "--json")
    code, out, _ = cli(capsys, *args, "--max-cost-usd", "1e-9")
    record = json.loads(out)
    steps = steps_by_id(record)
    assert code == 1 and steps["a"]["status"] == "done" and steps["a"]["cost_usd"] > 1e-9
    assert steps["b"]["error"]["type"] == "BudgetExceededError"
    assert record["budget"]["stopped"] == {"budget": "max_cost_usd", "where": "step b"}
    code, out, _ = cli(capsys, *args, "--max-cost-usd", "1")  # enough: the same plan runs
    assert code == 0 and json.loads(out)["budget"]["spent"]["steps"] == 2


def test_llm_steps_of_a_plan_run_go_to_the_endpoint_under_the_call_budget(
    tmp_path: Path,
    taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    server = scripted_server(respond=lambda body: Reply(text="a considered answer"))
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    plan = plan_file(
        tmp_path,
        {"id": "think", "kind": "llm", "inputs": {"instruction": "weigh the options"}},
        output="$think.text",
    )
    args = ("run", plan, "--inline", "--model", "scripted", "--json")
    code, out, err = cli(capsys, *args)
    record = json.loads(out)
    assert code == 0, err
    assert record["output"] == "a considered answer" and len(server.requests) == 1
    assert record["budget"]["spent"]["llm_calls"] == 1
    assert record["steps"][0]["model"] == "gpt-4o-mini"

    code, out, _ = cli(capsys, *args, "--max-llm-calls", "0")
    record = json.loads(out)
    assert code == 1 and len(server.requests) == 1  # refused before the call
    assert record["budget"]["stopped"] == {"budget": "max_llm_calls", "where": "step think"}


@pytest.mark.model
def test_max_cost_stops_a_plan_run_on_the_real_model(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": ["string", "null"]}}}
    extract = {"kind": "extract", "output": schema}
    plan = plan_file(
        tmp_path,
        {"id": "first", "inputs": {"text": "Ana moved to Lisbon."}, **extract},
        {"id": "second", "inputs": {"text": "Bo lives in Oslo."}, "after": ["first"], **extract},
        output={"a": "$first.city", "b": "$second.city"},
    )
    code, out, _ = cli(capsys, "run", plan, "--inline", "--json", "--max-cost-usd", "1e-9")
    record = json.loads(out)
    steps = steps_by_id(record)
    assert code == 1
    assert steps["first"]["status"] == "done" and steps["first"]["prompt_tokens"] > 0
    assert steps["second"]["error"]["type"] == "BudgetExceededError"
    assert record["budget"]["spent"]["cost_usd"] == pytest.approx(steps["first"]["cost_usd"])
