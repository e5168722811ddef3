"""Job handlers: what a worker does with each registered payload kind.

A handler takes a verified envelope and its claim, and returns the attempt's
StepResult. `step` runs one attempt of a step on the resident model; `run` (in
`taskloom.workflows.submitted`) drives a submitted run's workflow.
"""

from __future__ import annotations

from collections.abc import Callable

from taskloom import tracing
from taskloom.chat import ChatModel
from taskloom.config import Settings
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Claim
from taskloom.errors import JobRejectedError
from taskloom.step import StepResult
from taskloom.tools import ToolRegistry
from taskloom.tools.execute import execute

Handler = Callable[[payload.Envelope, Claim], StepResult]


def step_handler(
    *, model: ChatModel | None, tools: ToolRegistry, settings: Settings, worker: str
) -> Handler:
    """The handler for `step` payloads: one attempt of the step on the resident model."""

    def get_model() -> ChatModel:
        if model is None:
            raise JobRejectedError("this worker has no model; start it without --queue runs")
        return model

    def handle(envelope: payload.Envelope, claim: Claim) -> StepResult:
        job = payload.step_job(envelope)
        attributes = {
            "taskloom.run_id": job.run_id,
            "taskloom.step_id": job.step_id,
            "taskloom.kind": job.kind,
            "taskloom.queue": claim.queue,
            "taskloom.worker": worker,
            "taskloom.attempt": job.attempt,
        }
        name = f"execute {job.step_id}"
        with tracing.span(name, kind="consumer", parent=envelope.trace, attributes=attributes) as s:
            result = execute(job, model=get_model, tools=tools, settings=settings, worker=worker)
            tracing.set_attributes(s, tracing.result_attributes(result))
            if result.error is not None:
                tracing.fail(s, result.error.type, result.error.message)
        return result

    return handle
