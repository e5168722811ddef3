"""Goal runs with no LLM endpoint: direct plans, PlannerRequiredError, --local-planner.

The SLM is the shipped scripted fake behind the inline dispatcher (the real default
model runs the same paths in `test_goal_model.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from taskloom.agents.goal import route_goal, run_goal
from taskloom.agents.wiring import goal_agents
from taskloom.chat import Message, ScriptedChatModel, sample_for_schema
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.errors import PlannerRequiredError
from taskloom.tools import ToolRegistry
from taskloom.workflows import RunStatus

from .test_grounding import COPIED_TRIAGE, GOAL, INPUTS

COMPLEX = (
    "For each paragraph, extract every date, compare it with the calendar, then rank the "
    "conflicts by urgency and explain each one."
)


class Slm(ScriptedChatModel):
    """Names the fields `name` and `city`; plans by copying the issue's triage plan."""

    def __init__(self) -> None:
        super().__init__(respond=self.answer, name="slm")

    def answer(self, messages: Sequence[Message], schema: dict[str, Any] | None) -> Any:
        props = (schema or {}).get("properties", {})
        if "fields" in props:
            return {
                "fields": [
                    {"name": "name", "description": "the person's name"},
                    {"name": "city", "description": "the city they moved to"},
                ]
            }
        if "steps" in props:
            return COPIED_TRIAGE
        if "name" in props and "city" in props:  # the extract step itself
            return {"name": "Ana Silva", "city": "Lisbon"}
        return sample_for_schema(schema) if schema else "ok"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", openai_base_url=None, escalate_below=0.0)


def go(goal: str, settings: Settings, slm: ScriptedChatModel, **kw: Any) -> Any:
    agents = goal_agents(settings, tools=ToolRegistry(), slm=lambda: slm, **kw)
    dispatcher = InlineDispatcher(model=slm, settings=settings)
    return run_goal(goal, dict(INPUTS), agents, dispatcher=dispatcher, settings=settings)


def test_a_simple_goal_gets_one_step_that_fits_it(settings: Settings) -> None:
    record = go(GOAL, settings, Slm())
    assert record.status == RunStatus.DONE
    assert record.output == {"name": "Ana Silva", "city": "Lisbon"}
    assert [s.kind for s in record.steps] == ["extract"]
    assert record.route["target"] == "slm" and "threshold" in record.route["reason"]
    assert record.planner["name"] == "direct" and record.planner["model"] == "slm"
    assert "kept the goal on the SLM" in record.planner["why"]
    assert "fields named by the SLM: name, city" in record.planner["why"]
    assert record.rounds[0]["planner"] == record.planner


def test_a_complex_goal_without_an_endpoint_needs_a_planner(settings: Settings) -> None:
    slm = Slm()
    agents = goal_agents(settings, tools=ToolRegistry(), slm=lambda: slm)
    with pytest.raises(PlannerRequiredError) as e:
        route_goal(COMPLEX, dict(INPUTS), agents)
    message = str(e.value)
    assert "needs an LLM planner" in message and "OPENAI_BASE_URL" in message
    assert "python -m llama_cpp.server --model" in message and "--local-planner" in message
    assert "\n" not in message and e.value.exit_code == 2
    assert not any("steps" in (schema or {}).get("properties", {}) for _, schema in slm.calls)


def test_no_route_without_an_endpoint_needs_a_planner_and_loads_no_model(
    settings: Settings,
) -> None:
    def no_model() -> ScriptedChatModel:
        raise AssertionError("a model was loaded for a goal that can't run")

    agents = goal_agents(settings, tools=ToolRegistry(), slm=no_model, is_routed=False)
    with pytest.raises(PlannerRequiredError, match="routing is off"):
        route_goal(GOAL, dict(INPUTS), agents)


def test_the_local_planner_plans_and_its_copies_fall_back_to_the_direct_plan(
    settings: Settings,
) -> None:
    record = go(COMPLEX, settings, Slm(), is_local_planner=True)
    assert record.route["target"] == "llm"
    assert record.planner["name"] == "local"
    why = record.planner["why"]
    assert "--local-planner" in why and "does not answer the goal" in why
    assert record.rounds[0]["planner_attempts"] == 3  # the first plan and two repairs
    assert [s.kind for s in record.steps] == ["extract"]  # the direct plan, not the copy
