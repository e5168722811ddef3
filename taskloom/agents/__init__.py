"""Agents: the LLM planner, the joiner, the SLM↔LLM router, escalation and budgets.

The chat-model Protocol itself lives in `taskloom.chat` (the SLM kinds need it too);
`OpenAIChatModel` is its implementation for any OpenAI-compatible endpoint.
"""

from taskloom.agents.budget import Budget, LLMCall
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.agents.joiner import Decision, Joiner
from taskloom.agents.openai_chat import OpenAIChatModel, extract_json
from taskloom.agents.planner import Planner, PlanStream, check_plan, fallback_plan
from taskloom.agents.router import Route, Router, direct_plan
from taskloom.chat import ChatModel, ScriptedChatModel

__all__ = [
    "Budget",
    "ChatModel",
    "Decision",
    "EscalatingDispatcher",
    "Joiner",
    "LLMCall",
    "OpenAIChatModel",
    "PlanStream",
    "Planner",
    "Route",
    "Router",
    "ScriptedChatModel",
    "check_plan",
    "direct_plan",
    "extract_json",
    "fallback_plan",
]
