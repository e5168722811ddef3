"""`taskloom plan --goal` and `taskloom run --goal`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskloom.cli import main
from taskloom.testing.server import Reply, ScriptedServer

from .conftest import TRIAGE_PLAN

Server = Callable[..., ScriptedServer]
TOOLS = Path(__file__).parent / "goal_tools.py"
EMAIL = json.dumps({"email": "Hi, I'm Ann; order 42 never came."})
TOOL_PLAN = {
    "version": 1,
    "steps": [
        {"id": "total", "kind": "tool", "tool": "add", "inputs": {"a": "$input.x", "b": 2}},
        {"id": "say", "kind": "llm", "inputs": {"instruction": "Announce ${total}"}},
    ],
    "output": {"total": "$total", "said": "$say.text"},
}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what fixtures printed
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("taskloom: error")]


@pytest.fixture
def endpoint(
    scripted_server: Server, monkeypatch: pytest.MonkeyPatch, taskloom_home: Path
) -> Callable[..., ScriptedServer]:
    def make(replies: list[Reply] | None = None, **options: Any) -> ScriptedServer:
        server = scripted_server(replies, **options)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("TASKLOOM_PLANNER_BACKOFF_S", "0.01")
        monkeypatch.setenv("TASKLOOM_PLANNER_RETRIES", "2")
        monkeypatch.setenv("TASKLOOM_PLANNER_TIMEOUT_S", "0.3")
        return server

    return make


def test_plan_json(endpoint: Callable[..., ScriptedServer], capsys: Any) -> None:
    endpoint([Reply(text=TRIAGE_PLAN)])
    code, out, err = cli(capsys, "plan", "--goal", "Triage this email", "--input", EMAIL, "--json")
    assert code == 0, err
    assert [s["id"] for s in json.loads(out)["steps"]] == ["contact", "intent", "reply"]
    assert "3 steps, 1 attempt(s)" in err


def test_plan_mermaid_and_text(endpoint: Callable[..., ScriptedServer], capsys: Any) -> None:
    endpoint([Reply(text=TRIAGE_PLAN), Reply(text=TRIAGE_PLAN)])
    code, out, _ = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL, "--mermaid")
    assert code == 0 and out.startswith("flowchart TD") and "contact --> reply" in out
    code, out, _ = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL)
    assert code == 0 and "reply: generate (after contact, intent)" in out


def test_non_json_reply_is_repaired(endpoint: Callable[..., ScriptedServer], capsys: Any) -> None:
    server = endpoint([Reply(text="Let me think about it."), Reply(text=TRIAGE_PLAN)])
    code, _, err = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL, "--json")
    assert code == 0 and "2 attempt(s)" in err
    assert "not JSON" in server.requests[1]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"steps": "all of them"}, "steps input should be a valid list"),
        (
            {
                **TRIAGE_PLAN,
                "steps": [
                    *TRIAGE_PLAN["steps"],
                    {"id": "x", "kind": "tool", "tool": "refund", "inputs": {}},
                ],
            },
            "unknown tool 'refund' (registered tools: none)",
        ),
        (
            {
                "version": 1,
                "output": None,
                "steps": [
                    {"id": "a", "kind": "generate", "inputs": {"instruction": "${b.text}"}},
                    {"id": "b", "kind": "generate", "inputs": {"instruction": "${a.text}"}},
                ],
            },
            "cycle a → b → a",
        ),
        (
            {
                "version": 1,
                "output": "$a",
                "steps": [
                    {"id": "a", "kind": "generate", "inputs": {"instruction": "$ghost.text"}}
                ],
            },
            "references unknown step 'ghost'",
        ),
    ],
)
def test_plans_that_stay_invalid_exit_2_with_every_problem(
    endpoint: Callable[..., ScriptedServer], capsys: Any, bad: Any, expected: str
) -> None:
    endpoint([Reply(text=bad)] * 3)
    code, out, err = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL)
    assert code == 2 and out == ""
    (line,) = error_lines(err)
    assert expected in line and "3 attempts" in line
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(status=429), "HTTP 429"),
        (Reply(stall_s=1.0), "timed out"),
    ],
)
def test_endpoint_failures_exit_3_naming_it(
    endpoint: Callable[..., ScriptedServer], capsys: Any, reply: Reply, why: str
) -> None:
    server = endpoint([reply] * 3)
    code, _, err = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL)
    assert code == 3, err
    (line,) = error_lines(err)
    assert server.url in line and why in line and "after 3 attempt(s)" in line
    assert len(server.requests) == 3 and "Traceback" not in err


@pytest.mark.parametrize("command", ["plan", "run"])
def test_empty_goal_exits_2(
    endpoint: Callable[..., ScriptedServer], capsys: Any, command: str
) -> None:
    server = endpoint()
    code, _, err = cli(capsys, command, "--goal", "  ")
    assert code == 2 and "the goal is empty" in error_lines(err)[0]
    assert server.requests == []


def test_run_needs_a_target_or_a_goal(endpoint: Callable[..., ScriptedServer], capsys: Any) -> None:
    endpoint()
    code, _, err = cli(capsys, "run")
    assert code == 2 and "--goal" in err


def answer_llm(body: dict[str, Any]) -> Reply:
    system = body["messages"][0]["content"]
    if system.startswith("You are a planner"):
        return Reply(text=TOOL_PLAN)
    if system.startswith("You check the results"):
        return Reply(text={"action": "finish", "answer": "the total is 5"})
    return Reply(text="Five!")


def test_run_goal_plans_streams_runs_and_joins(
    endpoint: Callable[..., ScriptedServer], capsys: Any
) -> None:
    endpoint(respond=answer_llm, tokens_per_s=1000)
    code, out, err = cli(
        capsys,
        "run",
        "--goal",
        "Add two to x and announce it",
        "--input",
        '{"x": 3}',
        "--tools",
        str(TOOLS),
        "--inline",
        "--no-route",
        "--json",
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["output"] == "the total is 5"
    assert [(s["id"], s["status"]) for s in record["steps"]] == [("total", "done"), ("say", "done")]
    assert record["steps"][1]["model"] == "gpt-4o-mini" and record["steps"][1]["cost_usd"] > 0
    assert record["rounds"][0]["source"] == "planner (streamed)"
    assert record["budget"]["spent"]["llm_calls"] == 3  # plan, the llm step, join
    assert "goal: route llm, planned by llm, 1 round(s)" in err


def test_run_goal_stops_at_the_llm_call_budget(
    endpoint: Callable[..., ScriptedServer], capsys: Any
) -> None:
    endpoint(respond=answer_llm)
    code, out, err = cli(
        capsys,
        "run",
        "--goal",
        "Add two to x and announce it",
        "--input",
        '{"x": 3}',
        "--tools",
        str(TOOLS),
        "--inline",
        "--no-route",
        "--max-llm-calls",
        "1",
        "--json",
    )
    assert code == 1
    record = json.loads(out)
    assert record["budget"]["stopped"] == {"budget": "max_llm_calls", "where": "step say"}
    assert "stopped by budget max_llm_calls at step say" in err


def test_run_goal_without_streaming_and_cost_budget(
    endpoint: Callable[..., ScriptedServer], capsys: Any
) -> None:
    endpoint(respond=answer_llm)
    code, out, _ = cli(
        capsys,
        "run",
        "--goal",
        "Add two",
        "--input",
        '{"x": 3}',
        "--tools",
        str(TOOLS),
        "--inline",
        "--no-route",
        "--no-stream",
        "--max-cost-usd",
        "0",
        "--json",
    )
    assert code == 1
    assert json.loads(out)["budget"]["stopped"] == {"budget": "max_cost_usd", "where": "planning"}


def test_plan_with_the_scripted_model_and_no_endpoint_plans_directly(
    taskloom_home: Path, capsys: Any
) -> None:
    """`--model scripted` is the shipped fake everywhere, not a file named "scripted"."""
    code, out, err = cli(capsys, "plan", "--goal", "Say hi", "--model", "scripted", "--json")
    assert code == 0, err
    assert "model file" not in err
    assert json.loads(out)["version"] == 1
    assert "plan by scripted (direct planner)" in err
    assert "why: the router kept the goal on the SLM" in err


COMPLEX = (
    "First look up every open order for this customer, then compare their delivery dates "
    "with the carrier's status page, and finally draft an apology for each late one."
)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_complex_goal_without_an_endpoint_exits_2_in_one_line(
    taskloom_home: Path, capsys: Any, command: str
) -> None:
    code, out, err = cli(
        capsys, command, "--goal", COMPLEX, "--input", EMAIL, "--model", "scripted"
    )
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("taskloom: error: this goal needs an LLM planner")
    assert "OPENAI_BASE_URL" in line and "python -m llama_cpp.server --model" in line
    assert "Traceback" not in err


def test_local_planner_plans_a_complex_goal_with_a_warning(
    taskloom_home: Path, capsys: Any
) -> None:
    code, out, err = cli(
        capsys, "plan", "--goal", COMPLEX, "--input", EMAIL, "--model", "scripted",
        "--local-planner", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["version"] == 1
    warning = next(line for line in err.splitlines() if line.startswith("taskloom: warning"))
    assert "--local-planner" in warning and "weak" in warning and "OPENAI_BASE_URL" in warning
    assert "(local planner)" in err


def test_run_goal_records_the_route_and_the_planner(taskloom_home: Path, capsys: Any) -> None:
    code, out, err = cli(
        capsys, "run", "--goal", "Say hi", "--input", EMAIL, "--model", "scripted",
        "--inline", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["route"]["target"] == "slm" and record["route"]["reason"]
    assert record["planner"]["name"] == "direct" and record["planner"]["why"]
    assert "goal: route slm, planned by direct" in err


BAD_PLAN = {
    "version": 1,
    "steps": [{"id": "a", "kind": "generate", "inputs": {"instruction": "$ghost.text"}}],
}


def test_an_invalid_plan_error_names_the_model_the_server_served(
    endpoint: Callable[..., ScriptedServer], capsys: Any
) -> None:
    endpoint([Reply(text=BAD_PLAN)] * 3, served_model="gemma-270m")
    code, _, err = cli(capsys, "plan", "--goal", "Triage", "--input", EMAIL)
    assert code == 2
    (line,) = error_lines(err)
    assert "planner (gemma-270m, asked for 'gpt-4o-mini', 3 attempts)" in line


def test_run_goal_json_prints_the_record_with_every_rejected_plan_on_failure(
    endpoint: Callable[..., ScriptedServer], capsys: Any
) -> None:
    other = {"version": 1, "steps": [{"id": "b", "kind": "classfy", "inputs": {}}]}
    endpoint([Reply(text=BAD_PLAN), Reply(text=other), Reply(text="not json")])
    args = ["run", "--goal", "Triage", "--input", EMAIL, "--no-route", "--no-stream", "--inline"]
    code, out, err = cli(capsys, *args, "--json")
    assert code == 2
    (line,) = error_lines(err)
    assert "3 attempts" in line
    record = json.loads(out)
    assert record["status"] == "failed" and record["error"]["type"] == "PlanValidationError"
    (failed,) = record["rounds"]
    rejected = failed["rejected"]
    assert [r["attempt"] for r in rejected] == [1, 2, 3]
    assert rejected[0]["plan"] == BAD_PLAN
    assert any("unknown step 'ghost'" in p for p in rejected[0]["problems"])
    assert any("did you mean 'classify'?" in p for p in rejected[1]["problems"])
    assert rejected[2]["plan"] == "not json" and rejected[2]["problems"]
    assert failed["planner"]["name"] == "llm"
    code, out, _ = cli(capsys, *args)  # without --json, the error line alone
    assert code == 2 and out == ""
