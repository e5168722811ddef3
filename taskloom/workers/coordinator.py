"""The coordinator: how a `runs` worker drives a submitted run to its end.

A submitted run is a `run` job on the `runs` queue. A worker started with
`--queue runs` loads no model; it runs the workflow with a RedisDispatcher, so its
steps go to the SLM workers, and keeps the run record in Redis. If that worker dies,
the job's lease runs out and another worker drives the run again: steps that already
have a result are not queued again.
"""

from __future__ import annotations

import time
from typing import Any

from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.config import Settings
from taskloom.dispatch import payload
from taskloom.dispatch.broker import RUN_STEP, Broker, Claim
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import InfrastructureError, TaskloomError
from taskloom.step import ErrorInfo, StepResult, StepStatus
from taskloom.tools import ToolRegistry
from taskloom.workers.handlers import Handler
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.runner import run
from taskloom.workflows.target import rebuild


def run_handler(
    broker: Broker,
    *,
    settings: Settings,
    tools: ToolRegistry,
    workflows: dict[str, Workflow],
    worker: str,
) -> Handler:
    """The handler for `run` payloads: drive the run to its end, steps over Redis."""

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
            dispatcher = EscalatingDispatcher.for_target(
                RedisDispatcher(broker, settings=settings), settings
            )

            def save(event: dict[str, Any], record: RunRecord) -> None:
                if event.get("event") == "step_finished":
                    store.save(record)

            record = run(
                workflow,
                dict(body.get("inputs") or {}),
                dispatcher=dispatcher,
                settings=settings,
                store=store,
                run_id=run_id,
                target=target,
                on_event=save,
            )
            store.save(dispatcher.annotate(record))
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
