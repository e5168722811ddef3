"""Workflows: the Python builder, plans compiled to LangGraph, run records and running."""

from taskloom.workflows.flow import Flow, StepHandle
from taskloom.workflows.record import RunRecord, RunStatus, StepRecord
from taskloom.workflows.runner import new_run_id, resume, run, sqlite_checkpointer
from taskloom.workflows.store import RunStore, SqliteRunStore
from taskloom.workflows.workflow import Workflow, workflow

__all__ = [
    "Flow",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SqliteRunStore",
    "StepHandle",
    "StepRecord",
    "Workflow",
    "new_run_id",
    "resume",
    "run",
    "sqlite_checkpointer",
    "workflow",
]
