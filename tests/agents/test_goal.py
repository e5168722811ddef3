"""Goal runs: streamed planning, joining, replanning, escalation, routing and budgets.

The LLM is the real `openai` client against the scripted HTTP server; the SLM is the
shipped scripted fake behind the inline dispatcher.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from taskloom.agents import Budget, Joiner, Planner, Router
from taskloom.agents.goal import GoalRun, run_goal
from taskloom.chat import OpenAIChatModel, ScriptedChatModel, sample_for_schema
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.testing.server import Reply, ScriptedServer
from taskloom.workflows import RunStatus
from tests.agents.conftest import TRIAGE_PLAN

INPUTS = {"email": "Hi, I'm Ann. My parcel never came; I want a refund for order 42."}


class Script:
    """The LLM's side: plans for the planner, decisions for the joiner, schemas otherwise."""

    def __init__(self, plans: list[Any], joins: list[Any] | None = None) -> None:
        self.plans = plans
        self.joins = joins or [{"action": "finish", "answer": "joined"}]
        self.planner_requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> Reply:
        system = body["messages"][0]["content"]
        if system.startswith("You are a planner"):
            self.planner_requests.append(body)
            return Reply(text=self.plans.pop(0) if len(self.plans) > 1 else self.plans[0])
        if system.startswith("You check the results"):
            return Reply(text=self.joins.pop(0) if len(self.joins) > 1 else self.joins[0])
        if body.get("logprobs"):  # scoring a classify: favour the last label
            return Reply(text={"label": "other"})
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
        if schema and "label" in schema.get("properties", {}):
            return Reply(text={"label": schema["properties"]["label"]["enum"][-1]})
        return Reply(text=sample_for_schema(schema) if schema else "done by the LLM")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def agents_for(
    server: ScriptedServer,
    script: Script,
    settings: Settings,
    *,
    budget: Budget | None = None,
    router: bool = False,
    slm: ScriptedChatModel | None = None,
    is_streaming: bool = True,
) -> GoalRun:
    server.respond = script
    budget = budget or Budget()
    llm = OpenAIChatModel(base_url=server.url, settings=settings)
    return GoalRun(
        planner=Planner(llm, settings=settings, budget=budget),
        joiner=Joiner(llm, settings=settings, budget=budget),
        router=Router(slm, settings=settings, budget=budget) if router else None,
        llm=llm,
        budget=budget,
        is_streaming=is_streaming,
    )


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    """Fast retries; no escalation unless a test asks for it."""
    return Settings(
        home=tmp_path / "home",
        planner_timeout_s=2.0,
        planner_retries=1,
        retry_backoff_s=0.01,
        escalate_below=0.0,
        escalate_flagged=False,
    )


def go(agents: GoalRun, settings: Settings, slm: ScriptedChatModel | None = None, **kw: Any) -> Any:
    dispatcher = InlineDispatcher(model=slm or ScriptedChatModel(name="slm"), settings=settings)
    return run_goal(
        kw.pop("goal", "Triage this email"),
        INPUTS,
        agents,
        dispatcher=dispatcher,
        settings=settings,
        **kw,
    )


def test_streamed_plan_runs_and_the_joiner_answers(
    server: ScriptedServer, settings: Settings
) -> None:
    server.tokens_per_s = 300  # the plan (about 130 tokens) takes about half a second
    agents = agents_for(server, Script([TRIAGE_PLAN]), settings)
    record = go(agents, settings)
    assert record.status == RunStatus.DONE
    assert record.output == "joined"
    assert [s.id for s in record.steps] == ["contact", "intent", "reply"]
    (round_,) = record.rounds
    assert round_["source"] == "planner (streamed)" and round_["join"]["action"] == "finish"
    assert round_["first_step_ms"] < round_["plan_ms"] * 0.75  # the first of three steps
    plan_done = record.created_at + round_["plan_ms"] / 1000
    contact = record.steps[0]
    assert contact.started_at is not None and contact.started_at < plan_done  # ran while streaming
    assert record.plan["steps"][0]["id"] == "contact"
    assert record.budget["spent"]["llm_calls"] == 2  # plan, join
    assert record.budget["llm"]["planner"]["cost_usd"] > 0


def test_plan_then_execute_without_streaming(server: ScriptedServer, settings: Settings) -> None:
    agents = agents_for(server, Script([TRIAGE_PLAN]), settings, is_streaming=False)
    record = go(agents, settings)
    assert record.status == RunStatus.DONE and record.rounds[0]["source"] == "planner"


def test_joiner_replans_with_what_it_learned(server: ScriptedServer, settings: Settings) -> None:
    second = {
        "version": 1,
        "steps": [{"id": "more", "kind": "generate", "inputs": {"instruction": "ask for proof"}}],
        "output": "$more.text",
    }
    script = Script(
        [TRIAGE_PLAN, second],
        joins=[
            {"action": "replan", "reason": "no order status"},
            {"action": "finish", "answer": 7},
        ],
    )
    record = go(agents_for(server, script, settings), settings)
    assert record.status == RunStatus.DONE and record.output == 7
    assert [r["join"]["action"] for r in record.rounds] == ["replan", "finish"]
    assert [s.id for s in record.steps][-1] == "r2.more"
    told = script.planner_requests[1]["messages"][1]["content"]
    assert "no order status" in told and "step intent" in told


def test_replans_are_bounded(server: ScriptedServer, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_replans": 1})
    script = Script([TRIAGE_PLAN], joins=[{"action": "replan", "reason": "more"}])
    record = go(agents_for(server, script, settings), settings)
    assert len(record.rounds) == 2 and record.status == RunStatus.DONE
    assert record.rounds[-1]["join"]["reason"] == "the joiner's reply was not a decision" or (
        record.rounds[-1]["join"]["action"] == "finish"
    )


def test_low_confidence_step_escalates_to_the_llm(
    server: ScriptedServer, settings: Settings
) -> None:
    # uniform 3 labels: 0.33, which the shipped calibration maps to below 0.5
    settings = settings.model_copy(update={"escalate_below": 0.5})
    record = go(agents_for(server, Script([TRIAGE_PLAN]), settings), settings)
    assert record.status == RunStatus.DONE
    esc = next(e for e in record.escalations if e["step_id"] == "intent")
    assert esc["reason"].startswith("confidence 0.")
    assert esc["llm_cost_usd"] > 0 and esc["status"] == "done"
    intent = next(s for s in record.steps if s.id == "intent")
    assert intent.model == "gpt-4o-mini" and intent.value["label"] in {
        "refund",
        "shipping",
        "other",
    }
    assert intent.cost_usd >= esc["llm_cost_usd"]
    assert record.budget["llm"]["escalation"]["calls"] >= 1


def test_output_that_keeps_failing_validation_escalates(
    server: ScriptedServer, settings: Settings
) -> None:
    def slm_reply(messages: Any, schema: Any) -> Any:
        return (
            "not json"
            if schema and "name" in schema.get("properties", {})
            else (sample_for_schema(schema) if schema else "ok")
        )

    slm = ScriptedChatModel(respond=slm_reply, name="slm")
    record = go(agents_for(server, Script([TRIAGE_PLAN]), settings), settings, slm=slm)
    assert record.status == RunStatus.DONE
    (esc,) = record.escalations
    assert esc["step_id"] == "contact" and "failed validation" in esc["reason"]


def test_escalation_stops_at_the_budget(server: ScriptedServer, settings: Settings) -> None:
    settings = settings.model_copy(update={"escalate_below": 0.5})
    budget = Budget(max_llm_calls=1)  # the plan only
    agents = agents_for(server, Script([TRIAGE_PLAN]), settings, budget=budget)
    record = go(agents, settings)
    assert record.status == RunStatus.DONE  # the SLM's answer stands
    esc = next(e for e in record.escalations if e["step_id"] == "intent")
    assert esc["status"] == "skipped" and "max_llm_calls" in esc["skipped"]
    assert record.budget["stopped"]["budget"] == "max_llm_calls"
    assert record.rounds[0]["join"]["stopped"]["where"] == "joining"


def test_cost_budget_stops_planning_cleanly(server: ScriptedServer, settings: Settings) -> None:
    agents = agents_for(server, Script([TRIAGE_PLAN]), settings, budget=Budget(max_cost_usd=0.0))
    record = go(agents, settings)
    assert record.status == RunStatus.FAILED and record.steps == []
    assert record.budget["stopped"] == {"budget": "max_cost_usd", "where": "planning"}
    assert record.error.type == "BudgetExceededError"


def test_step_budget_stops_the_run_cleanly(server: ScriptedServer, settings: Settings) -> None:
    agents = agents_for(server, Script([TRIAGE_PLAN]), settings, budget=Budget(max_steps=2))
    record = go(agents, settings)  # the model writes 3 steps where 2 are allowed
    assert [s.id for s in record.steps] == ["contact", "intent"]  # the third never dispatched
    assert record.budget["spent"]["steps"] == 2
    assert record.budget["stopped"] == {"budget": "max_steps", "where": "planning"}
    assert record.status == RunStatus.FAILED


def test_invalid_streamed_plan_is_repaired(server: ScriptedServer, settings: Settings) -> None:
    bad = copy.deepcopy(TRIAGE_PLAN)
    bad["steps"].append({"id": "x", "kind": "tool", "tool": "refund", "inputs": {}})
    record = go(agents_for(server, Script([bad, TRIAGE_PLAN]), settings), settings)
    assert record.status == RunStatus.DONE
    first, repaired = record.rounds
    assert first["status"] == "failed" and first["source"] == "planner (streamed)"
    assert any("unknown tool" in p for p in first["streamed_plan_problems"])
    assert repaired["source"] == "planner (repaired)" and repaired["status"] == "done"
    assert [s.id for s in record.steps] == [
        "contact",
        "intent",
        "reply",
        "r2.contact",
        "r2.intent",
        "r2.reply",
    ]


@pytest.mark.parametrize(
    ("goal", "target"),
    [
        ("Translate 'thank you' into German.", "slm"),
        (
            "First look up every open order for this customer, then compare their delivery "
            "dates with the carrier's status page, and finally draft an apology for each late one.",
            "llm",
        ),
    ],
)
def test_router_sends_simple_requests_to_the_slm(
    server: ScriptedServer, settings: Settings, goal: str, target: str
) -> None:
    slm = ScriptedChatModel(name="slm")
    script = Script([TRIAGE_PLAN])
    record = go(
        agents_for(server, script, settings, router=True, slm=slm), settings, slm=slm, goal=goal
    )
    assert record.status == RunStatus.DONE
    assert record.route["target"] == target and "threshold" in record.route["reason"]
    if target == "slm":
        assert [s.kind for s in record.steps] == ["generate"] and script.planner_requests == []
        assert record.budget["spent"]["llm_calls"] == 0
    else:
        assert len(script.planner_requests) == 1


def test_llm_steps_need_an_llm(settings: Settings) -> None:
    plan = {
        "version": 1,
        "steps": [{"id": "a", "kind": "llm", "inputs": {"instruction": "Triage ${input.email}"}}],
        "output": "$a.text",
    }
    planner = Planner(ScriptedChatModel(replies=[plan]), is_local=True, settings=settings)
    agents = GoalRun(planner=planner)
    record = go(agents, settings)
    assert record.status == RunStatus.FAILED
    assert "set OPENAI_BASE_URL" in record.steps[0].error.message


def test_empty_goal_is_an_input_error(server: ScriptedServer, settings: Settings) -> None:
    from taskloom.errors import InputError

    with pytest.raises(InputError):
        go(agents_for(server, Script([TRIAGE_PLAN]), settings), settings, goal=" ")


def test_llm_step_with_an_output_schema(server: ScriptedServer, settings: Settings) -> None:
    schema = {
        "type": "object",
        "properties": {"risk": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["risk", "score"],
    }
    plan = {
        "version": 1,
        "steps": [
            {"id": "assess", "kind": "llm", "output": schema,
             "inputs": {"instruction": "Assess", "context": "$input"}}
        ],
        "output": "$assess.risk",
    }  # fmt: skip
    record = go(agents_for(server, Script([plan]), settings), settings)
    assert record.status == RunStatus.DONE
    step = record.steps[0]
    assert set(step.value) == {"risk", "score"} and step.model == "gpt-4o-mini"
    assert record.budget["llm"]["llm_step"]["calls"] == 1
