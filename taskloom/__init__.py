"""taskloom: a large model plans, small models execute.

The public API. Everything else is importable but may change. Names load on first
use, so that `import taskloom.<module>` stays cheap for commands that don't need
LangGraph or llama.cpp.

```python
import taskloom
record = taskloom.run("examples/triage.json", inputs={...})   # the embedded default
with taskloom.Cluster(workers=2) as cluster:                  # one start-up, many runs
    records = cluster.run_many("examples/triage.json", [{...}, {...}])
```
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.agents import Planner, Router
    from taskloom.api.cluster import Cluster, RunHandle, run_many
    from taskloom.api.local import plan_goal, resume, run, run_goal
    from taskloom.api.remote import cancel, submit, wait
    from taskloom.api.review import approve, reject, reviews
    from taskloom.chat import ChatModel, Completion, ModelHost, OpenAIChatModel, ScriptedChatModel
    from taskloom.config import Settings
    from taskloom.dispatch import (
        Dispatcher,
        EmbeddedCluster,
        InlineDispatcher,
        RedisDispatcher,
        connect,
    )
    from taskloom.errors import (
        BudgetExceededError,
        ConfigError,
        EndpointUnavailableError,
        InfrastructureError,
        InputError,
        JobRejectedError,
        MissingExtraError,
        ModelFileError,
        OutputValidationError,
        PlannerRequiredError,
        PlanValidationError,
        RedisUnavailableError,
        RunCancelledError,
        RunFailedError,
        RunNotFoundError,
        SchemaError,
        SteeringError,
        StepFailedError,
        StepSkippedError,
        TargetError,
        TaskInputError,
        TaskloomError,
        ToolError,
        UserError,
        WorkerLostError,
    )
    from taskloom.plan import Plan, Step, StepKind
    from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus
    from taskloom.tools import Tool, ToolRegistry, tool
    from taskloom.tools.checks import load_plan
    from taskloom.workflows import (
        Flow,
        RunRecord,
        RunStatus,
        RunStore,
        StepHandle,
        Workflow,
        workflow,
    )

try:  # one source for the version: the installed package's metadata (pyproject.toml)
    __version__ = _metadata.version("taskloom")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# A library prints nothing unless the application configures logging.
logging.getLogger("taskloom").addHandler(logging.NullHandler())

_ERRORS = [
    "BudgetExceededError",
    "ConfigError",
    "EndpointUnavailableError",
    "InfrastructureError",
    "InputError",
    "JobRejectedError",
    "MissingExtraError",
    "ModelFileError",
    "OutputValidationError",
    "PlanValidationError",
    "PlannerRequiredError",
    "RedisUnavailableError",
    "RunCancelledError",
    "RunFailedError",
    "RunNotFoundError",
    "SchemaError",
    "SteeringError",
    "StepFailedError",
    "StepSkippedError",
    "TargetError",
    "TaskInputError",
    "TaskloomError",
    "ToolError",
    "UserError",
    "WorkerLostError",
]

_WHERE = {
    "run": "api.local",
    "Cluster": "api.cluster",
    "RunHandle": "api.cluster",
    "run_many": "api.cluster",
    "resume": "api.local",
    "run_goal": "api.local",
    "plan_goal": "api.local",
    "submit": "api.remote",
    "cancel": "api.remote",
    "wait": "api.remote",
    "approve": "api.review",
    "reject": "api.review",
    "reviews": "api.review",
    "Flow": "workflows",
    "StepHandle": "workflows",
    "Workflow": "workflows",
    "workflow": "workflows",
    "RunRecord": "workflows",
    "RunStatus": "workflows",
    "RunStore": "workflows",
    "Tool": "tools",
    "ToolRegistry": "tools",
    "tool": "tools",
    "Plan": "plan",
    "Step": "plan",
    "StepKind": "plan",
    "load_plan": "tools.checks",
    "ErrorInfo": "step",
    "StepJob": "step",
    "StepResult": "step",
    "StepStatus": "step",
    "Settings": "config",
    "ChatModel": "chat",
    "Completion": "chat",
    "ModelHost": "chat",
    "OpenAIChatModel": "chat",
    "ScriptedChatModel": "chat",
    "Dispatcher": "dispatch",
    "EmbeddedCluster": "dispatch",
    "InlineDispatcher": "dispatch",
    "RedisDispatcher": "dispatch",
    "connect": "dispatch",
    "Planner": "agents",
    "Router": "agents",
    **{name: "errors" for name in _ERRORS},
}

__all__ = [
    "BudgetExceededError",
    "ChatModel",
    "Cluster",
    "Completion",
    "ConfigError",
    "Dispatcher",
    "EmbeddedCluster",
    "EndpointUnavailableError",
    "ErrorInfo",
    "Flow",
    "InfrastructureError",
    "InlineDispatcher",
    "InputError",
    "JobRejectedError",
    "MissingExtraError",
    "ModelFileError",
    "ModelHost",
    "OpenAIChatModel",
    "OutputValidationError",
    "Plan",
    "PlanValidationError",
    "Planner",
    "PlannerRequiredError",
    "RedisDispatcher",
    "RedisUnavailableError",
    "Router",
    "RunCancelledError",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SchemaError",
    "ScriptedChatModel",
    "Settings",
    "SteeringError",
    "Step",
    "StepFailedError",
    "StepHandle",
    "StepJob",
    "StepKind",
    "StepResult",
    "StepSkippedError",
    "StepStatus",
    "TargetError",
    "TaskInputError",
    "TaskloomError",
    "Tool",
    "ToolError",
    "ToolRegistry",
    "UserError",
    "WorkerLostError",
    "Workflow",
    "approve",
    "cancel",
    "connect",
    "load_plan",
    "plan_goal",
    "reject",
    "resume",
    "reviews",
    "run",
    "run_goal",
    "run_many",
    "submit",
    "tool",
    "wait",
    "workflow",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    return getattr(import_module(f"taskloom.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
