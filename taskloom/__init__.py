"""taskloom: a large model plans, small models execute.

The public API. Everything else is importable but may change. Names load on first
use, so that `import taskloom.<module>` stays cheap for commands that don't need
LangGraph or llama.cpp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.agents import OpenAIChatModel, Planner, Router
    from taskloom.chat import ChatModel, Completion, ScriptedChatModel
    from taskloom.config import Settings
    from taskloom.errors import TaskloomError
    from taskloom.plan import Plan, Step, StepKind, load_plan
    from taskloom.tools import Tool, ToolRegistry, tool
    from taskloom.workers.dispatch import Dispatcher
    from taskloom.workers.embedded import EmbeddedCluster
    from taskloom.workers.inline import InlineDispatcher
    from taskloom.workers.job import StepJob, StepResult, StepStatus
    from taskloom.workers.redis_dispatch import RedisDispatcher
    from taskloom.workflows import (
        Flow,
        RunRecord,
        RunStatus,
        StepHandle,
        Workflow,
        resume,
        run,
        workflow,
    )

__version__ = "0.1.0"

_WHERE = {
    "ChatModel": "chat",
    "Completion": "chat",
    "Dispatcher": "workers.dispatch",
    "EmbeddedCluster": "workers.embedded",
    "Flow": "workflows",
    "InlineDispatcher": "workers.inline",
    "OpenAIChatModel": "agents",
    "Plan": "plan",
    "Planner": "agents",
    "RedisDispatcher": "workers.redis_dispatch",
    "Router": "agents",
    "RunRecord": "workflows",
    "RunStatus": "workflows",
    "ScriptedChatModel": "chat",
    "Settings": "config",
    "Step": "plan",
    "StepHandle": "workflows",
    "StepJob": "workers.job",
    "StepKind": "plan",
    "StepResult": "workers.job",
    "StepStatus": "workers.job",
    "TaskloomError": "errors",
    "Tool": "tools",
    "ToolRegistry": "tools",
    "Workflow": "workflows",
    "load_plan": "plan",
    "resume": "workflows",
    "run": "workflows",
    "tool": "tools",
    "workflow": "workflows",
}

__all__ = [
    "ChatModel",
    "Completion",
    "Dispatcher",
    "EmbeddedCluster",
    "Flow",
    "InlineDispatcher",
    "OpenAIChatModel",
    "Plan",
    "Planner",
    "RedisDispatcher",
    "Router",
    "RunRecord",
    "RunStatus",
    "ScriptedChatModel",
    "Settings",
    "Step",
    "StepHandle",
    "StepJob",
    "StepKind",
    "StepResult",
    "StepStatus",
    "TaskloomError",
    "Tool",
    "ToolRegistry",
    "Workflow",
    "load_plan",
    "resume",
    "run",
    "tool",
    "workflow",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    return getattr(import_module(f"taskloom.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
