"""The coordinator: how a `runs` worker drives a submitted run to its end.

A submitted run is a `run` job on the `runs` queue. A worker started with
`--queue runs` loads no model; it runs the workflow with a RedisDispatcher, so its
steps go to the SLM workers, and keeps the run record in Redis. If that worker dies,
the job's lease runs out and another worker drives the run again: steps that already
have a result are not queued again. With `Settings.checkpointer` set (e.g. PostgreSQL,
shared by every `runs` worker), it goes on from the run's last LangGraph checkpoint.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from taskloom import tracing
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.config import Settings
from taskloom.dispatch import payload
from taskloom.dispatch.broker import RUN_STEP, Broker, Claim
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import InfrastructureError, TaskloomError
from taskloom.step import ErrorInfo, StepResult, StepStatus
from taskloom.tools import ToolRegistry
from taskloom.workers.handlers import Handler
from taskloom.workers.metrics import WorkerMetrics
from taskloom.workflows.checkpointer import open_checkpointer
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.review import ReviewDesk, ReviewingDispatcher
from taskloom.workflows.runner import has_checkpoint, resume, run
from taskloom.workflows.target import rebuild

SAVED_ON = frozenset({"step_finished", "review_waiting", "review_decided"})
"""The events after which the run record in Redis is brought up to date."""


def run_handler(
    broker: Broker,
    *,
    settings: Settings,
    tools: ToolRegistry,
    workflows: dict[str, Workflow],
    worker: str,
    metrics: WorkerMetrics | None = None,
) -> Handler:
    """The handler for `run` payloads: drive the run to its end, steps over Redis;
    `metrics`, when given, counts the run's escalations."""

    def handle(envelope: payload.Envelope, claim: Claim) -> StepResult:
        body = envelope.body
        run_id = str(body.get("run_id") or claim.run_id)
        target = str(body.get("target", ""))
        started = time.time()
        store = RedisRunStore(broker)
        try:
            workflow = rebuild(
                body.get("plan"),
                str(body.get("workflow") or ""),
                tools=tools,
                registered=workflows,
            )
            escalating = EscalatingDispatcher.for_target(
                RedisDispatcher(broker, settings=settings), settings
            )
            already = len(escalating.escalations)
            annotated = _AnnotatedStore(broker, escalating)
            # Review comes after escalation: a person sees what the LLM could not settle.
            dispatcher = ReviewingDispatcher(
                escalating,
                ReviewDesk(broker, settings=settings),
                default=body.get("review") or settings.review,
            )

            def save(event: dict[str, Any], record: RunRecord) -> None:
                if event.get("event") in SAVED_ON:
                    annotated.save(record)

            with ExitStack() as stack:
                # The submitter's trace context, if it sent one: the run span is its child.
                stack.enter_context(tracing.attached(envelope.trace))
                # With a checkpointer configured, a run whose coordinator died goes on
                # from its last checkpoint; without, it is driven again from the start
                # (steps that have a result in Redis are not queued again either way).
                checkpointer = (
                    stack.enter_context(open_checkpointer(settings))
                    if settings.checkpointer
                    else None
                )
                if checkpointer is not None and has_checkpoint(checkpointer, run_id):
                    record = resume(
                        store.load(run_id),
                        workflow,
                        dispatcher=dispatcher,
                        settings=settings,
                        checkpointer=checkpointer,
                        store=annotated,
                        on_event=save,
                    )
                else:
                    record = run(
                        workflow,
                        dict(body.get("inputs") or {}),
                        dispatcher=dispatcher,
                        settings=settings,
                        checkpointer=checkpointer,
                        store=annotated,
                        run_id=run_id,
                        target=target,
                        on_event=save,
                    )
            # The runner's last save, through `annotated`, already holds the escalations.
            if metrics is not None:
                metrics.escalated(escalating.escalations[already:])
        except InfrastructureError:
            raise  # not the run's fault: the lease re-queues it once Redis is back
        except TaskloomError as e:
            record = RunRecord(run_id=run_id, target=target)
            record.status, record.error = RunStatus.FAILED, ErrorInfo.of(e)
            record.finished_at = time.time()
            store.save(record)
        status = {RunStatus.DONE: StepStatus.DONE, RunStatus.CANCELLED: StepStatus.CANCELLED}
        return StepResult(
            run_id=run_id,
            step_id=RUN_STEP,
            status=status.get(record.status, StepStatus.FAILED),
            value={"status": record.status.value},
            error=record.error,
            worker=worker,
            started_at=started,
            finished_at=time.time(),
            run_ms=(time.time() - started) * 1000,
        )

    return handle


class _AnnotatedStore(RedisRunStore):
    """The run store, writing the run's escalations and budget into every record it
    saves: the runner's own last save marks the run finished and wakes `taskloom result
    --wait`, so that save must already carry them."""

    def __init__(self, broker: Broker, dispatcher: EscalatingDispatcher) -> None:
        super().__init__(broker)
        self.dispatcher = dispatcher

    def save(self, record: RunRecord) -> None:
        super().save(self.dispatcher.annotate(record))
