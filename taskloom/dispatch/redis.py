"""The redis dispatcher: ready steps go to workers over RQ queues, results come back.

A step is one RQ job on its queue (`slm`, `slm:<model>`, or the step's own). The
dispatcher then blocks on the step's notify list (BLPOP: no polling), where the worker
pushes each attempt's outcome. The step's final result is kept once per
(run_id, step_id), so a step that already has a `done` result is never queued again:
that is what lets a resumed run skip finished steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from taskloom.config import Settings, reveal
from taskloom.dispatch import payload
from taskloom.dispatch.base import with_retries
from taskloom.dispatch.broker import Broker, Notice
from taskloom.errors import ConfigError, RedisUnavailableError, RunCancelledError
from taskloom.logs import get_logger
from taskloom.step import StepJob, StepResult, StepStatus

log = get_logger(__name__)


class RedisDispatcher:
    """Dispatch steps to `taskloom worker` processes through Redis.

    Args:
        broker: the Redis the workers serve; or pass `url`.
        url: a Redis URL, when no broker is given.
        settings: attempts, backoff, secret and leases.
        health: called about once a second while a step waits; it raises to give up
            (the embedded cluster uses it to notice that its workers died).
        wait_s: how long one BLPOP blocks before `health` is called again.
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
        health: Callable[[], None] | None = None,
        wait_s: float = 1.0,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self._owns_broker = broker is None
        if broker is None:
            url = url or self.settings.redis_url
            if not url:
                raise ConfigError("no Redis to dispatch to; set TASKLOOM_REDIS_URL or --redis-url")
            broker = Broker(url, settings=self.settings)
        self.broker = broker
        self.health = health
        self.wait_s = wait_s

    def dispatch(self, job: StepJob) -> StepResult:
        """Queue the step and wait for its final result, retrying with backoff.

        Raises:
            ConfigError: the step's queue name is not allowed.
            RunCancelledError: the run was cancelled.
            RedisUnavailableError: Redis went away while the step was in flight.
        """
        queue = payload.queue_for(job)
        try:
            return self._dispatch(job, queue)
        except RedisUnavailableError as e:
            raise RedisUnavailableError(
                f"{e.message}; then resume with: taskloom resume {job.run_id}",
                run_id=job.run_id,
            ) from e

    def _dispatch(self, job: StepJob, queue: str) -> StepResult:
        return with_retries(job, partial(self._attempt, queue=queue), settings=self.settings)

    def _attempt(self, job: StepJob, *, queue: str) -> tuple[StepResult, bool]:
        """Queue one attempt and wait for the notice that settles it."""
        ids = {"run_id": job.run_id, "step_id": job.step_id}
        job = job.model_copy(update={"enqueued_at": time.time()})
        data = payload.encode(
            "step",
            job.model_dump(mode="json"),
            max_attempts=self.settings.max_attempts,
            secret=reveal(self.settings.secret),
        )
        job_id, state, stored, msg = self.broker.enqueue(
            queue=queue,
            data=data,
            run_id=job.run_id,
            step_id=job.step_id,
            description=f"{job.kind} step {job.step_id} of run {job.run_id}",
            wait_s=self.wait_s,
        )
        if state == "done" and stored is not None:
            log.debug("step_result_reused", **ids)
            return StepResult.model_validate_json(stored), True
        if state == "cancelled":
            raise RunCancelledError("the run was cancelled", **ids)
        log.debug("step_enqueued", queue=queue, job_id=job_id, attempt=job.attempt, **ids)
        result, is_final = self._await(job, job_id, msg)
        if result.status == StepStatus.CANCELLED:
            raise RunCancelledError("the run was cancelled", **ids)
        return result, is_final

    def _await(self, job: StepJob, job_id: str, msg: Notice | None) -> tuple[StepResult, bool]:
        """The first notice that settles this attempt: a final result, or our failure."""
        while True:
            if msg is None:
                if self.health is not None:
                    self.health()
                msg = self.broker.wait_notify(job.run_id, job.step_id, timeout_s=self.wait_s)
                continue
            result = msg.result
            # A done result is final for the step whichever job wrote it; anything else
            # must be about this attempt (older notices are left over from duplicates).
            if result is not None and (result.status == StepStatus.DONE or msg.job_id == job_id):
                return result, msg.final or result.status == StepStatus.DONE
            msg = None

    def close(self) -> None:
        """Release the connection pool, unless the broker was passed in (it is shared)."""
        if self._owns_broker:
            self.broker.redis.close()
