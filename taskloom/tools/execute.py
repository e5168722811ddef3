"""Run one StepJob where the model lives: the code shared by every dispatcher."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from taskloom import calibration as calibrations
from taskloom.chat import ChatModel
from taskloom.chat.base import Adapts
from taskloom.config import Settings
from taskloom.deadline import step_deadline
from taskloom.errors import ConfigError
from taskloom.logs import get_logger
from taskloom.plan import SLM_KINDS
from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus
from taskloom.tools import ToolRegistry, run_task

log = get_logger(__name__)


def execute(
    job: StepJob,
    *,
    model: Callable[[], ChatModel],
    tools: ToolRegistry,
    settings: Settings,
    worker: str,
) -> StepResult:
    """Run one attempt of a job and describe what happened; never raises for step errors.

    Whether a failure is worth another attempt is the error class's `is_retryable`.
    """
    started = time.time()
    queue_ms = max(0.0, (started - job.enqueued_at) * 1000)
    base = {
        "run_id": job.run_id,
        "step_id": job.step_id,
        "attempts": job.attempt,
        "worker": worker,
        "queue_ms": queue_ms,
        "started_at": started,
    }
    timeout_s = job.timeout_s or settings.step_timeout_s
    try:
        # Code inside the step (the decode loop, a tool) sees the deadline; the worker
        # also interrupts a step that does not look (see taskloom.workers.watchdog).
        with step_deadline(timeout_s, step_id=job.step_id):
            outcome = run_task(
                job.kind,
                job.inputs,
                output=job.output,
                model=step_model(job, model()) if job.kind in SLM_KINDS else None,
                tools=tools,
                tool_name=job.tool,
                output_retries=settings.output_retries,
                calibration=(
                    calibrations.load(settings.calibration, target=settings.target_precision)
                    if job.kind in SLM_KINDS
                    else None
                ),
            )
    except Exception as e:  # a step's failure is data: the dispatcher decides on retries
        finished = time.time()
        error = ErrorInfo.of(e).model_copy(update=_ids(job))
        log.warning(
            "step_attempt_failed", error=str(e), is_retryable=error.is_retryable, **_ids(job)
        )
        return StepResult(
            **base,
            status=StepStatus.FAILED,
            error=error,
            run_ms=(finished - started) * 1000,
            finished_at=finished,
        )
    finished = time.time()
    u = outcome.usage
    is_priced = job.kind in SLM_KINDS  # a Python tool costs nothing
    return StepResult(
        **base,
        status=StepStatus.DONE,
        value=outcome.value,
        model=u.model,
        run_ms=(finished - started) * 1000,
        prompt_tokens=u.prompt_tokens,
        prompt_tokens_evaluated=u.prompt_tokens_evaluated,
        completion_tokens=u.completion_tokens,
        decodes=u.decodes,
        drafted=u.drafted,
        draft_accepted=u.draft_accepted,
        cost_usd=settings.cost_usd(u.model, u.prompt_tokens, u.completion_tokens)
        if is_priced
        else 0.0,
        finished_at=finished,
        confidence=outcome.confidence,
        accepted=outcome.accepted,
        meta=outcome.meta | ({"adapter": Path(job.adapter).name} if job.adapter else {}),
    )


def step_model(job: StepJob, model: ChatModel) -> ChatModel:
    """The model to run the job's step on: the worker's, with the job's adapter applied.

    Raises:
        ConfigError: the job names an adapter and the model can't apply one (only a
            llama.cpp model host can): running without would silently drop what was
            learned, so the step fails instead.
    """
    if not job.adapter:
        return model
    if not isinstance(model, Adapts):
        raise ConfigError(
            f"step {job.step_id} asks for the adapter {job.adapter}, but the model"
            f" {model.name} can't apply LoRA adapters; run it on a worker with a GGUF model"
        )
    return model.adapted(job.adapter)


def _ids(job: StepJob) -> dict[str, str]:
    return {"run_id": job.run_id, "step_id": job.step_id}
