"""Running a workflow to a run record: start, stream events, resume after a crash."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.errors import RunCancelledError, RunFailedError
from taskloom.logs import get_logger
from taskloom.step import ErrorInfo, StepResult, StepStatus
from taskloom.workflows.checkpointer import sqlite_checkpointer as sqlite_checkpointer
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.store import RunStore
from taskloom.workflows.traced import TracedDispatcher, run_span

log = get_logger(__name__)

Event = dict[str, Any]
OnEvent = Callable[[Event, RunRecord], None]


def new_run_id() -> str:
    """A fresh run id: sortable by start time, unique."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def has_checkpoint(checkpointer: BaseCheckpointSaver[Any], run_id: str) -> bool:
    """Whether the checkpointer holds a checkpoint of this run (its LangGraph thread)."""
    return checkpointer.get_tuple({"configurable": {"thread_id": run_id}}) is not None


def run(
    workflow: Workflow,
    inputs: dict[str, Any],
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: RunStore | None = None,
    run_id: str | None = None,
    target: str = "",
    on_event: OnEvent | None = None,
    cancelled: threading.Event | None = None,
) -> RunRecord:
    """Run a workflow to the end and return its record (status done, failed or cancelled).

    Raises:
        UserError: bad inputs, or a Python workflow that adds an invalid step.
        InfrastructureError: the dispatcher lost its backend.
    """
    workflow.check_inputs(inputs)
    record = RunRecord(
        run_id=run_id or new_run_id(),
        target=target,
        plan=workflow.plan.model_dump(mode="json", exclude_none=True) if workflow.plan else None,
        inputs=inputs,
    )
    return _drive(
        workflow, inputs, record, dispatcher, settings, checkpointer, store, on_event, cancelled
    )


def resume(
    record: RunRecord,
    workflow: Workflow,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any],
    store: RunStore | None = None,
    on_event: OnEvent | None = None,
) -> RunRecord:
    """Continue a crashed or failed run from its checkpoint; finished steps don't run again."""
    log.info("run_resuming", run_id=record.run_id)
    return _drive(workflow, None, record, dispatcher, settings, checkpointer, store, on_event, None)


def _drive(
    workflow: Workflow,
    inputs: dict[str, Any] | None,
    record: RunRecord,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any] | None,
    store: RunStore | None,
    on_event: OnEvent | None,
    cancelled: threading.Event | None,
) -> RunRecord:
    with run_span(record) as parent:
        if parent:  # tracing is on: each step's span goes under the run's
            dispatcher = TracedDispatcher(dispatcher, parent)
        return _stream(
            workflow, inputs, record, dispatcher, settings, checkpointer, store, on_event, cancelled
        )


def _stream(
    workflow: Workflow,
    inputs: dict[str, Any] | None,
    record: RunRecord,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any] | None,
    store: RunStore | None,
    on_event: OnEvent | None,
    cancelled: threading.Event | None,
) -> RunRecord:
    graph = workflow.compile(dispatcher=dispatcher, checkpointer=checkpointer, cancelled=cancelled)
    config: Any = {
        "configurable": {"thread_id": record.run_id},
        "max_concurrency": settings.max_concurrency + 1,  # +1: the entrypoint holds a thread
    }
    record.status, record.error, record.finished_at = RunStatus.RUNNING, None, None
    _save(store, record)
    log.info("run_started", run_id=record.run_id, target=record.target)
    final: dict[str, Any] | None = None
    try:
        for mode, chunk in graph.stream(inputs, config, stream_mode=["custom", "values"]):
            if mode == "values" and isinstance(chunk, dict):
                final = chunk
            elif isinstance(chunk, dict):
                _apply(record, chunk)
                if on_event is not None:
                    on_event(chunk, record)
    except RunCancelledError as e:
        record.status, record.error = RunStatus.CANCELLED, ErrorInfo.of(e)
    except RunFailedError as e:
        record.status, record.error = RunStatus.FAILED, ErrorInfo.of(e)
    else:
        if final is None:
            final = _last_value(graph, config)
        if final is not None:
            for raw in final["steps"]:  # merged as they streamed, unless none streamed
                result = StepResult.model_validate(raw)  # (a resumed run's earlier steps)
                step = record.step(result.step_id)
                if not step.status.is_final:
                    step.merge(result)
            record.output = final["output"]
            record.status = RunStatus.DONE
        else:
            record.status = RunStatus.FAILED
            record.error = ErrorInfo(type="RunFailedError", message="the run produced no output")
    record.finished_at = time.time()
    _close_steps(record)
    record.tally()
    _save(store, record)
    log.info("run_finished", run_id=record.run_id, status=record.status.value)
    return record


def _apply(record: RunRecord, event: Event) -> None:
    """Merge one streamed event into the record (a step's result is taken once)."""
    kind = event.get("event")
    if kind == "step_added":
        step = record.step(event["step_id"], event.get("kind", ""))
        step.depends_on, step.inputs = event["depends_on"], event["inputs"]
    elif kind == "step_started":
        step = record.step(event["step_id"], event.get("kind", ""))
        step.status, step.started_at = StepStatus.RUNNING, event.get("at")
    elif kind == "step_finished":
        step = record.step(event["step_id"], event.get("kind", ""))
        step.merge(StepResult.model_validate(event["result"]))
        _settle(record)
    elif kind == "review_waiting":
        record.step(event["step_id"], event.get("kind", "")).status = StepStatus.WAITING
        record.status = RunStatus.WAITING
    elif kind == "review_decided":
        decided = event["review"]
        if not any(r.get("step") == decided.get("step") for r in record.reviews):
            record.reviews.append(decided)


def _close_steps(record: RunRecord) -> None:
    """A run that ended leaves no step running, waiting or pending: any still marked so
    (stopped by a cancel, or never started) ends `cancelled` when the run did."""
    for step in record.steps:
        if not step.status.is_final:
            step.status = StepStatus.CANCELLED
            step.finished_at = step.finished_at or record.finished_at
            step.error = step.error or ErrorInfo(
                type="RunCancelledError", message=f"the run ended {record.status.value}"
            )


def _settle(record: RunRecord) -> None:
    """A run waits while any of its steps waits for a review, and runs otherwise."""
    waiting = any(s.status == StepStatus.WAITING for s in record.steps)
    if record.status in (RunStatus.RUNNING, RunStatus.WAITING):
        record.status = RunStatus.WAITING if waiting else RunStatus.RUNNING


def _last_value(graph: Any, config: Any) -> dict[str, Any] | None:
    """The value of a thread that had already finished (resume of a finished run)."""
    state = graph.get_state(config)
    value = state.values if state is not None else None
    return value if isinstance(value, dict) and "steps" in value else None


def _save(store: RunStore | None, record: RunRecord) -> None:
    if store is not None:
        store.save(record)
