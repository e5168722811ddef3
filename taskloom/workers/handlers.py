"""Job handlers: what a worker does with each registered payload kind.

A handler takes a verified envelope and its claim, and returns the attempt's
StepResult. `step` runs one attempt of a step on the resident model; `run` (in
`taskloom.workflows.submitted`) drives a submitted run's workflow.
"""

from __future__ import annotations

from collections.abc import Callable

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
        return execute(job, model=get_model, tools=tools, settings=settings, worker=worker)

    return handle
