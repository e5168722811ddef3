"""The planner against the scripted endpoint: valid plans, repairs, bad input, streaming."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from taskloom.agents import Budget, Planner
from taskloom.chat import OpenAIChatModel, ScriptedChatModel
from taskloom.config import Settings
from taskloom.errors import BudgetExceededError, InputError, PlanValidationError
from taskloom.plan import load_plan
from taskloom.testing.server import Reply, ScriptedServer
from taskloom.tools import ToolRegistry, tool

from .conftest import TRIAGE_PLAN

Server = Callable[..., ScriptedServer]
Llm = Callable[..., OpenAIChatModel]
INPUTS = {"email": "Hi, I'm Ann. Where is order 42?"}


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up by id."""
    return {"order_id": order_id, "status": "shipped"}


def with_step(plan: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(plan)
    out["steps"].append(step)
    return out


def last_user_message(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


def test_valid_plan_first_try(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(text=TRIAGE_PLAN)])
    tools = ToolRegistry([lookup_order])
    planner = Planner(llm_for(server), tools=tools)
    plan = planner.plan("Triage this email", INPUTS)
    assert [s.id for s in plan.steps] == ["contact", "intent", "reply"]
    system = server.requests[0]["messages"][0]["content"]
    assert "lookup_order" in system and "fill_slots" in system and "- llm:" in system
    assert "$input.email: str" in last_user_message(server.requests[0])
    assert planner.budget.llm_calls == 1 and planner.budget.cost_usd > 0


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("I think the plan should extract the name first.", "not JSON"),
        ([1, 2, 3], "a plan is a JSON object"),
        ({"tasks": ["a"]}, "steps field required"),
        (
            with_step(
                TRIAGE_PLAN,
                {"id": "loop", "kind": "generate", "inputs": {"instruction": "${loop.text}"}},
            ),
            "cycle loop → loop",
        ),
        (
            with_step(TRIAGE_PLAN, {"id": "x", "kind": "generate", "inputs": {"context": "$nope"}}),
            "unknown step 'nope'",
        ),
        (
            with_step(TRIAGE_PLAN, {"id": "x", "kind": "tool", "tool": "refund", "inputs": {}}),
            "unknown tool 'refund'",
        ),
    ],
)
def test_bad_plans_are_repaired(
    scripted_server: Server, llm_for: Llm, bad: Any, problem: str
) -> None:
    server = scripted_server([Reply(text=bad), Reply(text=TRIAGE_PLAN)])
    planner = Planner(llm_for(server), tools=ToolRegistry([lookup_order]))
    plan = planner.plan("Triage this email", INPUTS)
    assert len(plan.steps) == 3 and planner.attempts == 2
    feedback = last_user_message(server.requests[1])
    assert problem in feedback and "corrected JSON plan" in feedback
    assert server.requests[1]["messages"][-2]["role"] == "assistant"


def test_still_invalid_after_repairs_lists_every_problem(
    scripted_server: Server, llm_for: Llm, fast_settings: Settings
) -> None:
    bad = with_step(TRIAGE_PLAN, {"id": "x", "kind": "tool", "tool": "refund", "inputs": {}})
    bad = with_step(bad, {"id": "y", "kind": "generate", "inputs": {"context": "$input.missing"}})
    server = scripted_server([Reply(text=bad)] * 3)
    planner = Planner(llm_for(server), settings=fast_settings)
    with pytest.raises(PlanValidationError) as e:
        planner.plan("Triage this email", INPUTS)
    assert len(server.requests) == 3  # the first try and two repairs
    assert any("unknown tool 'refund'" in p for p in e.value.problems)
    assert any("$input.missing" in p for p in e.value.problems)
    assert e.value.exit_code == 2 and "3 attempts" in str(e.value)


@pytest.mark.parametrize("goal", ["", "   \n"])
def test_empty_goal(scripted_server: Server, llm_for: Llm, goal: str) -> None:
    server = scripted_server()
    with pytest.raises(InputError, match="goal is empty"):
        Planner(llm_for(server)).plan(goal, {})
    assert server.requests == []


def test_budget_stops_repairs(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(text="nope")] * 3)
    budget = Budget(max_llm_calls=1)
    with pytest.raises(BudgetExceededError) as e:
        Planner(llm_for(server), budget=budget).plan("Triage", INPUTS)
    assert (e.value.budget, e.value.where) == ("max_llm_calls", "planning")
    assert budget.stopped == {"budget": "max_llm_calls", "where": "planning"}
    assert len(server.requests) == 1


def test_step_budget_limits_plan_size(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(text=TRIAGE_PLAN)] * 3)
    planner = Planner(llm_for(server), budget=Budget(max_steps=2))
    with pytest.raises(PlanValidationError, match="more than the limit of 2"):
        planner.plan("Triage", INPUTS)
    assert '"maxItems": 2' in json.dumps(server.requests[0]["response_format"])


def test_local_planner_falls_back_to_a_valid_one_step_plan() -> None:
    slm = ScriptedChatModel(replies=["garbage"] * 3, name="tiny")
    planner = Planner(slm, is_local=True, allow_llm_steps=False)
    plan = planner.plan("Summarise the email", INPUTS)
    assert [(s.id, s.kind) for s in plan.steps] == [("answer", "generate")]
    assert planner.last_fallback and "not JSON" in planner.last_fallback
    load_plan(plan, inputs=INPUTS)  # valid by construction
    assert "- llm:" not in slm.calls[0][0][0]["content"]


def test_stream_yields_each_step_in_dependency_order(scripted_server: Server, llm_for: Llm) -> None:
    forward = copy.deepcopy(TRIAGE_PLAN)
    forward["steps"] = [forward["steps"][2], *forward["steps"][:2]]  # reply references later ones
    server = scripted_server([Reply(text=forward)], tokens_per_s=2000)
    planner = Planner(llm_for(server))
    stream = planner.stream("Triage", INPUTS)
    order = [s.id for s in stream]
    assert order == ["contact", "intent", "reply"]
    assert [s.id for s in stream.finish().steps] == ["reply", "contact", "intent"]
    assert planner.budget.llm_calls == 1 and planner.budget.cost_usd > 0
    assert server.requests[0]["stream"] is True


def test_stream_holds_back_a_step_naming_an_unknown_tool(
    scripted_server: Server, llm_for: Llm
) -> None:
    bad = with_step(TRIAGE_PLAN, {"id": "x", "kind": "tool", "tool": "refund", "inputs": {}})
    server = scripted_server([Reply(text=bad)])
    stream = Planner(llm_for(server)).stream("Triage", INPUTS)
    assert [s.id for s in stream] == ["contact", "intent", "reply"]
    with pytest.raises(PlanValidationError, match="unknown tool 'refund'"):
        stream.finish()
