"""Runs submitted to Redis: submit, cancel, and resume here.

A submitted run is a `run` job on the `runs` queue; a `runs` worker drives it
(`taskloom.workers.coordinator`).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from taskloom.config import RUNS_QUEUE, Settings, reveal
from taskloom.dispatch import payload
from taskloom.dispatch.broker import RUN_STEP, Broker
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import TargetError
from taskloom.logs import get_logger
from taskloom.step import ErrorInfo
from taskloom.workflows.checkpointer import open_checkpointer
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.review import ReviewDesk, ReviewingDispatcher
from taskloom.workflows.runner import OnEvent, has_checkpoint, new_run_id, resume, run
from taskloom.workflows.target import collect, rebuild

log = get_logger(__name__)


def step_queues(workflow: Workflow) -> set[str]:
    """The queues a workflow's steps go to (a Python workflow's are known only at run time)."""
    if workflow.plan is None:
        return {payload.queue_name(None, None)}
    return {payload.queue_name(s.queue, s.model) for s in workflow.plan.steps}


def submit(
    workflow: Workflow,
    inputs: dict[str, Any],
    *,
    broker: Broker,
    settings: Settings,
    target: str,
    run_id: str | None = None,
) -> str:
    """Queue a run for a `runs` worker; returns its run id.

    Raises:
        InputError: the inputs don't fit the workflow.
        RedisUnavailableError: Redis can't be reached.
    """
    workflow.check_inputs(inputs)
    for q in step_queues(workflow):
        payload.check_queue(q)
    check_coordinators(broker, workflow, target=target)
    run_id = run_id or new_run_id()
    plan = workflow.plan.model_dump(mode="json", exclude_none=True) if workflow.plan else None
    record = RunRecord(run_id=run_id, target=target, plan=plan, inputs=inputs)
    RedisRunStore(broker).save(record)
    body = {
        "run_id": run_id,
        "target": target,
        "plan": plan,
        "inputs": inputs,
        "workflow": None if plan else workflow.name,
        "review": settings.review,
    }
    data = payload.encode("run", body, max_attempts=1, secret=reveal(settings.secret))
    broker.enqueue(
        queue=RUNS_QUEUE,
        data=data,
        run_id=run_id,
        step_id=RUN_STEP,
        description=f"run {run_id} of {target}",
    )
    log.info("run_submitted", run_id=run_id, target=target)
    return run_id


def check_coordinators(broker: Broker, workflow: Workflow, *, target: str) -> None:
    """Refuse a Python workflow that no live `runs` worker has loaded (it would fail there).

    Each `runs` worker lists the workflows of its `--tools` modules. With none live, the
    run waits in its queue for one, so nothing is refused; nor while a live one does not
    say what it loaded (an older version).

    Raises:
        TargetError: every live `runs` worker says it lacks the workflow.
    """
    if workflow.plan is not None:
        return
    live = broker.live_workers(RUNS_QUEUE)
    if not live or any("workflows" not in w for w in live):
        return
    if any(workflow.name in w["workflows"].split(",") for w in live):
        return
    loaded = sorted({t for w in live for t in w.get("tools", "").split(",") if t})
    module = target.rpartition(":")[0] or "MODULE"
    raise TargetError(
        f"no live runs worker can run workflow {workflow.name!r} (they loaded "
        f"{', '.join(loaded) or 'no --tools modules'}); start one with: "
        f"taskloom worker --queue runs --tools {module}"
    )


def cancel(broker: Broker, run_id: str) -> tuple[int, int]:
    """Cancel a run: queued steps are dropped, running ones are told to stop.

    Returns:
        (queued jobs cancelled, jobs still running).
    """
    store = RedisRunStore(broker)
    record = store.load(run_id)
    queued, running = broker.cancel(run_id)
    if record.status == RunStatus.PENDING:  # its coordinator never started
        record.status, record.finished_at = RunStatus.CANCELLED, time.time()
        record.error = ErrorInfo(type="RunCancelledError", message="the run was cancelled")
        store.save(record)
    log.info("run_cancel_requested", run_id=run_id, queued=queued, running=running)
    return queued, running


def resume_submitted(
    broker: Broker,
    run_id: str,
    *,
    settings: Settings,
    tool_specs: list[str],
    on_event: OnEvent | None = None,
) -> RunRecord | None:
    """Drive a submitted run again, in this process; None if Redis has no such run.

    Steps that already have a `done` result are not queued again; with a checkpointer
    configured that holds the run, it goes on from its last checkpoint.
    """
    store = RedisRunStore(broker)
    if not store.exists(run_id):
        return None
    record = store.load(run_id)
    tools, workflows = collect(tool_specs)
    name = record.target.rpartition(":")[2]
    workflow = (
        workflows[name]
        if record.plan is None and name in workflows
        else rebuild(record.plan, record.target, tools=tools)
    )
    broker.uncancel(run_id)
    dispatcher = ReviewingDispatcher(
        RedisDispatcher(broker, settings=settings),
        ReviewDesk(broker, settings=settings),
        default=settings.review,
    )
    with ExitStack() as stack:
        checkpointer = (
            stack.enter_context(open_checkpointer(settings)) if settings.checkpointer else None
        )
        if checkpointer is not None and has_checkpoint(checkpointer, run_id):
            return resume(
                record,
                workflow,
                dispatcher=dispatcher,
                settings=settings,
                checkpointer=checkpointer,
                store=store,
                on_event=on_event,
            )
        return run(
            workflow,
            record.inputs,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            run_id=run_id,
            target=record.target,
            on_event=on_event,
        )
