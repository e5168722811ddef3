"""Job handlers: what a worker does with each registered payload kind.

A handler takes a verified envelope and its claim, and returns the attempt's
StepResult. `step` runs one attempt of a step on the resident model; `run` (in
`taskloom.workflows.remote`) drives a submitted run's workflow.
"""

from __future__ import annotations

from collections.abc import Callable

from taskloom.chat import ChatModel
from taskloom.config import Settings
from taskloom.errors import JobRejectedError
from taskloom.tools import ToolRegistry
from taskloom.workers import payload
from taskloom.workers.broker import Claim
from taskloom.workers.execute import execute
from taskloom.workers.job import StepResult

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


def load_model(settings: Settings) -> ChatModel:
    """The resident model: `settings.model` ("scripted" for the shipped fake), or the default.

    Raises:
        ModelFileError: the GGUF file is missing or corrupt.
    """
    if settings.model == "scripted":
        from taskloom.chat.scripted import ScriptedChatModel

        return ScriptedChatModel()
    from taskloom.workers.host import default_host  # llama-cpp only where a model is loaded

    return default_host(settings)
