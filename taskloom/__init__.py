"""taskloom: a large model plans, small models execute.

The public API. Everything else is importable but may change.
"""

from taskloom.chat import ChatModel, Completion, ScriptedChatModel
from taskloom.config import Settings
from taskloom.errors import TaskloomError
from taskloom.plan import Plan, Step, StepKind, load_plan
from taskloom.tools import Tool, ToolRegistry, tool
from taskloom.workers.dispatch import Dispatcher
from taskloom.workers.inline import InlineDispatcher
from taskloom.workers.job import StepJob, StepResult, StepStatus
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

__all__ = [
    "ChatModel",
    "Completion",
    "Dispatcher",
    "Flow",
    "InlineDispatcher",
    "Plan",
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
