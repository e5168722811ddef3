"""Workflows: the Python builder, plans compiled to LangGraph, run records and running.

Names load on first use, so that light commands (`taskloom status`) don't import
LangGraph.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.workflows.checkpointer import open_checkpointer, sqlite_checkpointer
    from taskloom.workflows.definition import Workflow, workflow
    from taskloom.workflows.flow import Flow, StepHandle
    from taskloom.workflows.record import RunRecord, RunStatus, StepRecord
    from taskloom.workflows.runner import new_run_id, resume, run
    from taskloom.workflows.store import MemoryRunStore, RunStore, SqliteRunStore

_WHERE = {
    "Flow": "flow",
    "StepHandle": "flow",
    "RunRecord": "record",
    "RunStatus": "record",
    "StepRecord": "record",
    "new_run_id": "runner",
    "resume": "runner",
    "run": "runner",
    "open_checkpointer": "checkpointer",
    "sqlite_checkpointer": "checkpointer",
    "MemoryRunStore": "store",
    "RunStore": "store",
    "SqliteRunStore": "store",
    "Workflow": "definition",
    "workflow": "definition",
}

__all__ = [
    "Flow",
    "MemoryRunStore",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SqliteRunStore",
    "StepHandle",
    "StepRecord",
    "Workflow",
    "new_run_id",
    "open_checkpointer",
    "resume",
    "run",
    "sqlite_checkpointer",
    "workflow",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'taskloom.workflows' has no attribute {name!r}")
    return getattr(import_module(f"taskloom.workflows.{_WHERE[name]}"), name)
