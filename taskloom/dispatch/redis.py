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
from typing import TYPE_CHECKING

from taskloom.config import Settings, reveal
from taskloom.dispatch import payload
from taskloom.dispatch.base import with_retries
from taskloom.dispatch.broker import Broker, Notice
from taskloom.errors import ConfigError, RedisUnavailableError, RunCancelledError
from taskloom.logs import get_logger
from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus

if TYPE_CHECKING:
    from taskloom.dispatch.embedded import EmbeddedCluster

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
        cluster: the embedded cluster whose workers serve it, when it started one.
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
        health: Callable[[], None] | None = None,
        wait_s: float = 1.0,
        cluster: EmbeddedCluster | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings if settings is not None else Settings()
        self._owns_broker = broker is None
        if broker is None:
            url = url or self.settings.redis_url
            if not url:
                raise ConfigError("no Redis to dispatch to; set TASKLOOM_REDIS_URL or --redis-url")
            broker = Broker(url, settings=self.settings, client_name="taskloom-coordinator")
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
        update: dict[str, object] = {"enqueued_at": time.time()}
        if job.timeout_s is None and self.settings.step_timeout_s:
            update["timeout_s"] = self.settings.step_timeout_s
        job = job.model_copy(update=update)
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
            return self._verified(StepResult.model_validate_json(stored)), True
        if state == "cancelled":
            raise RunCancelledError("the run was cancelled", **ids)
        if state == "running":  # another coordinator's job for this step is in flight
            log.info("step_already_in_flight", job_id=job_id, **ids)
        log.debug("step_enqueued", queue=queue, job_id=job_id, attempt=job.attempt, **ids)
        # A second waiter on a step may lose the notice to the first: it looks more often.
        every_s = self.wait_s if state == "running" else self.settings.lease_s
        result, is_final = _Wait(self, job, job_id, queue, every_s=every_s).until_settled(msg)
        if result.status == StepStatus.CANCELLED:
            raise RunCancelledError("the run was cancelled", **ids)
        return result, is_final

    def _verified(self, result: StepResult) -> StepResult:
        """The result, or a failure in its place if it lacks a valid worker signature."""
        if payload.is_verified(result, reveal(self.settings.secret)):
            return result
        message = (
            "its result in Redis is not signed with TASKLOOM_SECRET, so it was not merged "
            "(forged, or written by a worker with another secret)"
        )
        log.error("step_result_refused", run_id=result.run_id, step_id=result.step_id)
        return StepResult(
            run_id=result.run_id,
            step_id=result.step_id,
            status=StepStatus.FAILED,
            attempts=result.attempts,
            error=ErrorInfo(
                type="JobRejectedError",
                message=message,
                run_id=result.run_id,
                step_id=result.step_id,
            ),
            finished_at=time.time(),
        )

    def close(self) -> None:
        """Release the connection pool, unless the broker was passed in (it is shared)."""
        if self._owns_broker:
            self.broker.redis.close()


class _Wait:
    """Waiting for one attempt's outcome, and noticing when it will never come.

    Notices arrive by BLPOP. About once a lease (once a second for a step that another
    coordinator's job already runs) the job itself is looked at too
    (`Broker.probe`): a job that is no longer queued, leased or finished was taken by
    something that is not a taskloom worker (a plain `rq worker`) or lost, so the attempt
    fails, to be retried per policy; a job left queued while no live worker serves its
    queue for `no_worker_timeout_s` fails the step.
    """

    def __init__(
        self, dispatcher: RedisDispatcher, job: StepJob, job_id: str, queue: str, *, every_s: float
    ) -> None:
        self.d = dispatcher
        self.job = job
        self.job_id = job_id
        self.queue = queue
        self.every_s = every_s
        now = time.monotonic()
        self.probe_at = now + every_s
        self.served_at = now

    def until_settled(self, msg: Notice | None) -> tuple[StepResult, bool]:
        """The first notice that settles this attempt: a final result, or our failure."""
        d, job = self.d, self.job
        while True:
            if msg is None:
                if d.health is not None:
                    d.health()
                if time.monotonic() >= self.probe_at:
                    settled = self._probe()
                    if settled is not None:
                        return settled
                msg = d.broker.wait_notify(job.run_id, job.step_id, timeout_s=d.wait_s)
                continue
            result = msg.result
            # A done result is final for the step whichever job wrote it; anything else
            # must be about this attempt (older notices are left over from duplicates).
            if result is not None and (
                result.status == StepStatus.DONE or msg.job_id == self.job_id
            ):
                return d._verified(result), msg.final or result.status == StepStatus.DONE
            msg = None

    def _probe(self) -> tuple[StepResult, bool] | None:
        settings, job = self.d.settings, self.job
        now = time.monotonic()
        self.probe_at = now + self.every_s
        state, detail = self.d.broker.probe(self.job_id, job.run_id, job.step_id)
        if state == "result":
            return self.d._verified(StepResult.model_validate_json(detail)), True
        if state == "outcome":
            result = StepResult.model_validate_json(detail)
            return self.d._verified(result), not result.is_retryable
        if state == "leased" or (state == "queued" and detail == b"1"):
            self.served_at = now
            return None
        if state == "queued":
            waited_s = now - self.served_at
            if waited_s < settings.no_worker_timeout_s:
                return None
            return self._lost(
                f"no live worker served queue {self.queue!r} for {waited_s:.0f} s "
                f"(Settings.no_worker_timeout_s); start one with: "
                f"taskloom worker --queue {self.queue}",
                is_retryable=False,
            )
        return self._lost(
            f"its job {self.job_id} left queue {self.queue!r} without a result "
            f"({detail.decode(errors='replace')}); a plain `rq worker` fails taskloom "
            f"jobs: only `taskloom worker` may serve this queue",
            is_retryable=True,
        )

    def _lost(self, message: str, *, is_retryable: bool) -> tuple[StepResult, bool]:
        """Fail this attempt; the last one is dead-lettered, so `status` shows it."""
        job = self.job
        ids = {"run_id": job.run_id, "step_id": job.step_id}
        is_final = not is_retryable or job.attempt >= self.d.settings.max_attempts
        log.warning("step_job_lost", job_id=self.job_id, why=message, is_final=is_final, **ids)
        if is_final:
            self.d.broker.reject(self.job_id, error="WorkerLostError", message=message)
            stored = self.d.broker.result(job.run_id, job.step_id)
            done = StepResult.model_validate_json(stored) if stored is not None else None
            if done is not None and done.status == StepStatus.DONE:  # it won the race
                return self.d._verified(done), True
        error = ErrorInfo(type="WorkerLostError", message=message, is_retryable=True, **ids)
        result = StepResult(
            **ids,
            status=StepStatus.FAILED,
            attempts=job.attempt,
            error=error,
            finished_at=time.time(),
        )
        return result, is_final
