"""The Dispatcher Protocol, and the retry policy every dispatcher shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from taskloom import tracing
from taskloom.config import Settings
from taskloom.logs import get_logger
from taskloom.step import StepJob, StepResult

log = get_logger(__name__)

Attempt = Callable[[StepJob], tuple[StepResult, bool]]
"""One attempt of a job: its result, and whether that result is final for the step."""


@runtime_checkable
class Dispatcher(Protocol):
    """Runs ready steps somewhere (in-process, or on workers over Redis).

    `dispatch` blocks until the step has a final result, retries included; it is
    called from many threads at once, one per step in flight.
    """

    def dispatch(self, job: StepJob) -> StepResult:
        """Run the job to a final result (done or failed after its attempts)."""
        ...

    def close(self) -> None:
        """Release what the dispatcher holds (models, connections, processes)."""
        ...


def with_retries(job: StepJob, attempt: Attempt, *, settings: Settings) -> StepResult:
    """Attempt a job until its result is final: done, not retryable, or out of attempts.

    Retries wait `retry_backoff_s`, doubling each time, up to `max_attempts` in all.
    """
    delay_s = settings.retry_backoff_s
    retried: list[str] = []  # why each earlier attempt did not count
    lost = 0  # deliveries of earlier attempts whose worker was lost
    while True:
        result, is_final = attempt(job)
        tracing.event(
            "attempt",
            {
                "taskloom.attempt": job.attempt,
                "taskloom.status": result.status.value,
                "taskloom.worker": result.worker or None,
                "taskloom.queue_ms": result.queue_ms,
                "taskloom.run_ms": result.run_ms,
                "error.type": result.error.type if result.error else None,
            },
        )
        if is_final or not result.is_retryable or job.attempt >= settings.max_attempts:
            if not retried and not lost:
                return result
            update = {"attempts": result.attempts + lost, "retried": retried + result.retried}
            return result.model_copy(update=update)
        lost += max(0, result.attempts - job.attempt)
        why = f"{result.error.type}: {result.error.message}" if result.error else "failed"
        retried += [*result.retried, f"attempt {job.attempt} failed: {why}"]
        log.info(
            "step_retrying",
            run_id=job.run_id,
            step_id=job.step_id,
            attempt=job.attempt,
            delay_s=delay_s,
        )
        time.sleep(delay_s)
        delay_s *= 2
        job = job.model_copy(update={"attempt": job.attempt + 1})
