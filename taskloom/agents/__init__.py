"""Agents: the LLM planner, the joiner, the SLM↔LLM router, escalation, budgets, and the
goal loop (`run_goal` in `agents.goal`) that drives them.

Goals the router keeps on the SLM get one step that fits them (`agents.direct`).
The models they talk to are `taskloom.chat` models (`OpenAIChatModel` for an endpoint).
"""

from taskloom.agents.budget import Budget, LLMCall
from taskloom.agents.direct import DirectPlan, DirectPlanner, direct_plan
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.agents.joiner import Decision, Joiner
from taskloom.agents.planner import Planner, PlanStream, check_plan, fallback_plan
from taskloom.agents.router import Route, Router

__all__ = [
    "Budget",
    "Decision",
    "DirectPlan",
    "DirectPlanner",
    "EscalatingDispatcher",
    "Joiner",
    "LLMCall",
    "PlanStream",
    "Planner",
    "Route",
    "Router",
    "check_plan",
    "direct_plan",
    "fallback_plan",
]
