"""The worker: a long-lived process that keeps one model loaded and runs queued jobs.

Why not RQ's `SimpleWorker`? It does not fork (good: CUDA does not survive `fork()`),
but a job costs it about a dozen Redis round trips (dequeue, registries, heartbeats,
result stream), which puts a no-op step at ~5 ms; its leases are measured in minutes,
and a job popped with BLPOP is lost if the worker dies before it is registered as
started. This loop keeps RQ's data layout (so `rq info` shows our queues, jobs and
workers) but moves each job with one Lua script per state transition: claim pops the
job and leases it atomically, finish writes the result once and wakes the waiter. A
heartbeat thread extends the leases of running jobs every `lease_s / 3` seconds and
re-queues the jobs of workers that stopped heartbeating.

Concurrency: with N > 1 the worker claims up to N jobs and runs each on its own thread;
the heartbeat extends every lease it holds. SLM steps then decode together on the
resident model (continuous batching, `taskloom.chat.llama.batch`); `cancel` stops one
step's sequence through its cancel event (`taskloom.chat.cancel`), leaving the others.

Signals: SIGTERM or SIGINT drains (the running steps finish, then the worker exits);
a second one stops them and puts them back on their queue. Coordinators (`runs`) are
put back at once: they resume elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from taskloom.chat.cancel import cancel_scope
from taskloom.config import Settings, reveal
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Broker, Claim
from taskloom.errors import JobRejectedError, RedisUnavailableError
from taskloom.logs import get_logger
from taskloom.plan import SLM_KINDS
from taskloom.step import ErrorInfo, StepResult, StepStatus
from taskloom.workers import watchdog
from taskloom.workers.handlers import Handler
from taskloom.workers.heartbeat import Heartbeat
from taskloom.workers.signals import Interrupted, Signals

log = get_logger(__name__)


def run_job(envelope: dict[str, Any]) -> None:
    """The one function our RQ jobs name. It refuses to run under a plain RQ worker.

    A plain `rq worker` would run jobs without checking signatures or a resident model,
    so the job is left failed in RQ's registry with this message (and the waiting
    coordinator notices the job is gone).
    """
    from rq import get_current_job  # only a plain RQ worker calls this

    job = get_current_job()
    queue = job.origin if job is not None else "?"
    raise JobRejectedError(
        f"a plain RQ worker took this taskloom job from queue {queue!r}; a `taskloom "
        f"worker` must serve this queue: stop the `rq worker` and start "
        f"`taskloom worker --queue {queue}`"
    )


def worker_name() -> str:
    """A unique, readable worker name: host, pid and a short random tag."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:4]}"


class Worker(Signals, Heartbeat):
    """Serve queues until stopped (or, with `burst`, until they are empty).

    Args:
        broker: the Redis to serve.
        queues: queue names, in priority order.
        handlers: a handler per payload kind this worker accepts (`step`, `run`).
        settings: lease, secret and attempts.
        name: the registered name (default: host.pid.tag).
        info: what to register besides the queues (model, GPU).
        concurrency: jobs at once; 1 runs them on the main thread (and makes `cancel`
            able to stop a running step); more runs them on threads (coordinators).
        is_burst: exit once the queues are empty.
        parent_pid: drain and exit once this process is gone (the embedded cluster's
            workers must not outlive the run, or join a later cluster on the same port).
        is_restart_by_exec: how to restart when a step can't be stopped at its
            deadline: re-execute this process (True), or exit 75 for a supervisor.
        max_jobs: stop after this many jobs (`is_recycled` is then set), so that a
            supervisor starts a fresh process, as Celery's max-tasks-per-child does.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        queues: list[str],
        handlers: dict[str, Handler],
        settings: Settings,
        name: str | None = None,
        info: dict[str, Any] | None = None,
        concurrency: int = 1,
        is_burst: bool = False,
        parent_pid: int | None = None,
        is_restart_by_exec: bool = True,
        max_jobs: int | None = None,
    ) -> None:
        self.broker = broker
        self.queues = [payload.check_queue(q) for q in queues]
        self.handlers = handlers
        self.settings = settings
        self.name = name or worker_name()
        self.info = dict(info or {})
        self.concurrency = max(1, concurrency)
        self.is_burst = is_burst
        self.parent_pid = parent_pid
        self.key = f"rq:worker:{self.name}"
        self.jobs_done = 0
        self.jobs_failed = 0
        self.working_s = 0.0  # summed step run time, for the mean `taskloom workers` shows
        self._running: dict[str, Claim] = {}
        self._cancels: dict[str, threading.Event] = {}  # by job id, for steps on threads
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.concurrency)
        self._stopping = threading.Event()
        self._stopped = threading.Event()  # every job is done or put back: stop beating
        self._threads: list[threading.Thread] = []  # jobs running on threads
        self._signals = 0
        self._interruptible = False
        self._interrupt = ""
        self._queues_empty = False  # the claim riding on the last finish found nothing
        self._restarting = ""  # the job whose stuck step makes this process restart
        self.is_restart_by_exec = is_restart_by_exec
        self.max_jobs = max_jobs
        self.is_recycled = False  # stopped at max_jobs
        self.is_drained = False  # stopped by `taskloom drain` (see the heartbeat)
        self.ready_at = time.time()  # when it took its first job: set again by `work`

    # -- lifecycle --------------------------------------------------------------------

    def work(self) -> None:
        """Register, take jobs until told to stop, then deregister."""
        self._install_signals()
        self._register()
        beat = threading.Thread(target=self._beat, name="taskloom-heartbeat", daemon=True)
        beat.start()
        self.ready_at = time.time()
        log.info(
            "worker_ready",
            worker=self.name,
            queues=",".join(self.queues),
            concurrency=self.concurrency,
            **self.info,
        )
        try:
            self._loop()
        finally:
            self._stopping.set()
            self._drain_threads()
            self._stopped.set()
            with contextlib.suppress(RedisUnavailableError):
                self.broker.deregister_worker(self.key, self.queues)
            log.info("worker_stopped", worker=self.name, jobs=self.jobs_done)

    def stop(self) -> None:
        """Ask the worker to stop after the current job."""
        self._stopping.set()

    @property
    def is_stopping(self) -> bool:
        """Whether it is draining (or stopped): what a standalone /healthz reports."""
        return self._stopping.is_set()

    def _register(self) -> None:
        info = {
            "taskloom": "1",
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "python_version": sys.version.split()[0],
            "version": "taskloom",
            "state": "idle",
            "successful_job_count": 0,
            "failed_job_count": 0,
            "sequences": f"0/{self.concurrency}",
            **self.info,
        }
        self.broker.register_worker(self.name, self.queues, info)

    def _loop(self) -> None:
        backoff_s = 0.1
        claim: Claim | None = None
        while True:
            if self._stopping.is_set():
                if claim is not None:  # claimed as a SIGTERM arrived: put it back
                    self._retry_redis(partial(self.broker.requeue, claim.job_id))
                return
            try:
                claim = claim or self._next()
                backoff_s = 0.1
            except RedisUnavailableError as e:
                log.warning("redis_unavailable", worker=self.name, error=str(e))
                self._stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if claim is None:
                if self.is_burst and not self._running:
                    return
                continue
            if self._stopping.is_set():
                continue
            if self.concurrency == 1:
                claim = self._handle(claim)  # the next job rides on this one's finish
            else:
                thread = threading.Thread(target=self._handle, args=(claim,), daemon=True)
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()
                claim = None

    def _next(self) -> Claim | None:
        """The next job: claim at once, else block on the queues' wake tokens and claim."""
        if self.concurrency > 1 and not self._slots.acquire(timeout=1.0):
            return None
        try:
            claim = None
            if not self._queues_empty:
                claim = self.broker.claim(self.queues, worker=self.name)
            self._queues_empty = False
            if claim is None and not self.is_burst:
                claim = self.broker.wait_and_claim(self.queues, worker=self.name, timeout_s=1.0)
        except BaseException:
            if self.concurrency > 1:
                self._slots.release()
            raise
        if claim is None and self.concurrency > 1:
            self._slots.release()
        return claim

    def _drain_threads(self) -> None:
        """Let running steps finish (until a second signal); put back what still runs.

        Coordinators are put back at once: their runs resume elsewhere.
        """
        if self.concurrency == 1:
            return
        if "run" not in self.handlers:
            while any(t.is_alive() for t in self._threads) and self._signals < 2:
                time.sleep(0.05)
        with self._lock:
            running = list(self._running.values())
            for event in self._cancels.values():
                event.set()  # stop their sequences: the jobs go back on the queue
        for claim in running:
            try:
                self.broker.requeue(claim.job_id)
                log.info("job_requeued", job_id=claim.job_id, run_id=claim.run_id)
            except RedisUnavailableError:
                pass

    # -- one job ----------------------------------------------------------------------

    def _handle(self, claim: Claim) -> Claim | None:
        """Run one job; returns the next claim when it came back with this one's finish."""
        ids = {"run_id": claim.run_id, "step_id": claim.step_id, "job_id": claim.job_id}
        try:
            if claim.state == "duplicate":
                log.info("job_duplicate_skipped", **ids)
                return None
            try:
                envelope = payload.decode(claim.data, secret=reveal(self.settings.secret))
                handler = self.handlers.get(envelope.kind)
                if handler is None:
                    raise JobRejectedError(
                        f"a {envelope.kind!r} job reached queue {claim.queue!r}, "
                        f"which this worker serves for {sorted(self.handlers)} jobs"
                    )
            except JobRejectedError as e:
                reason = str(e)
                log.warning("job_rejected", reason=reason, **ids)
                self._retry_redis(
                    lambda: self.broker.reject(
                        claim.job_id, error="JobRejectedError", message=reason
                    )
                )
                return None
            if claim.state == "cancelled":
                return self._cancelled(claim, envelope)
            return self._execute(claim, envelope, handler)
        finally:
            if self.concurrency > 1:
                self._slots.release()

    def _execute(self, claim: Claim, envelope: payload.Envelope, handler: Handler) -> Claim | None:
        cancelled = threading.Event()
        with self._lock:
            self._running[claim.job_id] = claim
            self._cancels[claim.job_id] = cancelled
        watch = self._watch(claim, envelope)
        try:
            try:
                self._interruptible = self.concurrency == 1
                with cancel_scope(cancelled):
                    result = handler(envelope, claim)
            finally:
                self._interruptible = False
                if watch is not None:
                    watch.stop()
            if cancelled.is_set() and self.broker.is_cancelled(claim.run_id):
                return self._cancelled(claim, envelope)
        except Interrupted as stop:
            if stop.reason == "cancel":
                return self._cancelled(claim, envelope)
            if stop.reason == "timeout":
                log.warning("step_interrupted", reason="deadline", **_ids(claim))
                return self._settle(claim, envelope, self._timed_out(claim, envelope))
            self._retry_redis(lambda: self.broker.requeue(claim.job_id))
            log.info("job_requeued", run_id=claim.run_id, step_id=claim.step_id)
            return None
        except RedisUnavailableError as e:
            # Leave the job leased: once Redis is back its lease runs out and it is re-queued.
            log.warning("job_abandoned", run_id=claim.run_id, step_id=claim.step_id, error=str(e))
            return None
        except JobRejectedError as e:  # a body its handler can't open: refused, not a bug
            reason = str(e)
            log.warning("job_rejected", reason=reason, run_id=claim.run_id, step_id=claim.step_id)
            self._retry_redis(
                lambda: self.broker.reject(claim.job_id, error="JobRejectedError", message=reason)
            )
            return None
        except Exception as e:  # a handler bug: fail the job rather than kill the worker
            log.exception("job_crashed", run_id=claim.run_id, step_id=claim.step_id)
            result = StepResult(
                run_id=claim.run_id,
                step_id=claim.step_id,
                status=StepStatus.FAILED,
                error=ErrorInfo.of(e),
                worker=self.name,
                finished_at=time.time(),
            )
        finally:
            with self._lock:
                self._running.pop(claim.job_id, None)
                self._cancels.pop(claim.job_id, None)
        if self._stopping.is_set() and cancelled.is_set():
            return None  # stopped by the drain, which puts the job back
        return self._settle(claim, envelope, result)

    def _settle(
        self,
        claim: Claim,
        envelope: payload.Envelope,
        result: StepResult,
        *,
        is_forced: bool = False,
    ) -> Claim | None:
        """Write an attempt's outcome: final when done, not retryable, or out of attempts."""
        if claim.job_id == self._restarting and not is_forced:
            return None  # the watchdog wrote it, and this process is about to be replaced
        attempt = int(envelope.body.get("attempt", 1))
        is_final = (
            result.status == StepStatus.DONE
            or not result.is_retryable
            or attempt >= envelope.max_attempts
        )
        is_dead = is_final and result.status == StepStatus.FAILED
        dead = result.error.model_dump() if is_dead and result.error else None
        if result.status == StepStatus.DONE:
            self.jobs_done += 1
        else:
            self.jobs_failed += 1
        if self.max_jobs and self.jobs_done + self.jobs_failed >= self.max_jobs:
            if not self._stopping.is_set():
                log.info("worker_recycling", worker=self.name, max_jobs=self.max_jobs)
            self.is_recycled = True
            self._stopping.set()  # no next claim rides on this finish
        self.working_s += result.run_ms / 1000
        return self._finish(claim, result, is_final=is_final, dead=dead)

    def _cancelled(self, claim: Claim, envelope: payload.Envelope) -> Claim | None:
        result = StepResult(
            run_id=claim.run_id,
            step_id=claim.step_id,
            status=StepStatus.CANCELLED,
            attempts=int(envelope.body.get("attempt", 1)),
            worker=self.name,
            error=ErrorInfo(type="RunCancelledError", message="the run was cancelled"),
            finished_at=time.time(),
        )
        log.info("job_cancelled", run_id=claim.run_id, step_id=claim.step_id)
        return self._finish(claim, result, is_final=True, dead=None)

    # -- deadlines ----------------------------------------------------------------------

    def _watch(self, claim: Claim, envelope: payload.Envelope) -> watchdog.StepWatchdog | None:
        """A watchdog for a step with a deadline, on a worker that runs one job at a time."""
        timeout_s = watchdog.timeout_of(envelope, self.settings)
        if not timeout_s or self.concurrency != 1 or envelope.kind != "step":
            return None
        # A tool or an LLM call is interrupted in place. The decode loop stops itself, and
        # an interrupt between two llama.cpp calls could leave the host's cache out of
        # step, so a stuck SLM step is only restarted.
        is_slm = envelope.body.get("kind") in SLM_KINDS
        interrupt = partial(self._interrupt_main, "timeout", job_id=claim.job_id)
        return watchdog.StepWatchdog(
            timeout_s,
            on_deadline=(lambda: None) if is_slm else interrupt,
            on_stuck=partial(self._restart, claim, envelope),
        )

    def _timed_out(self, claim: Claim, envelope: payload.Envelope) -> StepResult:
        timeout_s = watchdog.timeout_of(envelope, self.settings) or 0.0
        return watchdog.timed_out(claim, envelope, timeout_s=timeout_s, worker=self.name)

    def _restart(self, claim: Claim, envelope: payload.Envelope) -> None:
        """The step ignored its interrupt and still holds the main thread: write its
        timeout outcome from here, then re-execute this process (or exit 75 for a
        supervisor, with `is_restart_by_exec=False`)."""
        how = "exec" if self.is_restart_by_exec else f"exit {watchdog.EXIT_RESTART}"
        log.error("worker_restarting", reason="step_not_interruptible", how=how, **_ids(claim))
        self._stopping.set()  # no further claim rides on this finish
        self._restarting = claim.job_id
        with self._lock:
            self._running.pop(claim.job_id, None)
        self._settle(claim, envelope, self._timed_out(claim, envelope), is_forced=True)
        with contextlib.suppress(RedisUnavailableError):
            self.broker.deregister_worker(self.key, self.queues)
        watchdog.restart_process(is_exec=self.is_restart_by_exec)

    def _finish(
        self, claim: Claim, result: StepResult, *, is_final: bool, dead: dict[str, Any] | None
    ) -> Claim | None:
        """Record the outcome; a single-job worker claims its next job in the same trip."""
        status = {StepStatus.DONE: "finished", StepStatus.CANCELLED: "canceled"}
        result = self._accounted(claim, result)
        is_claiming = self.concurrency == 1 and not self._stopping.is_set()
        outcome = self._retry_redis(
            lambda: self.broker.finish(
                claim,
                result_json=payload.sign_result(
                    result, reveal(self.settings.secret)
                ).model_dump_json(),
                is_final=is_final,
                job_status=status.get(result.status, "failed"),
                dead=dead,
                claim_next=self.queues if is_claiming else None,
                worker=self.name,
            )
        )
        won, next_claim = outcome if outcome is not None else (False, None)
        self._queues_empty = is_claiming and outcome is not None and next_claim is None
        log.debug(
            "job_finished",
            run_id=claim.run_id,
            step_id=claim.step_id,
            status=result.status.value,
            is_final=is_final,
            is_merged=won,
        )
        return next_claim

    def _accounted(self, claim: Claim, result: StepResult) -> StepResult:
        """The result with what only the worker knows: the deliveries lost before this
        one (they ran too), and how much of the step's wait was this worker starting up
        (process start and model load), which is not time spent waiting in the queue."""
        update: dict[str, Any] = {}
        if claim.deliveries:
            update["attempts"] = result.attempts + claim.deliveries
            update["retried"] = [*claim.losses(), *result.retried]
        enqueued_at = result.started_at - result.queue_ms / 1000
        if result.started_at and enqueued_at < self.ready_at:
            startup_ms = (min(self.ready_at, result.started_at) - enqueued_at) * 1000
            update["startup_ms"] = startup_ms
            update["queue_ms"] = max(0.0, result.queue_ms - startup_ms)
        return result.model_copy(update=update) if update else result

    def _retry_redis(self, fn: Callable[[], Any], *, give_up_s: float = 30.0) -> Any:
        """Retry a write through a Redis outage; after `give_up_s` the lease takes over."""
        deadline = time.monotonic() + give_up_s
        delay_s = 0.1
        while True:
            try:
                return fn()
            except RedisUnavailableError as e:
                if time.monotonic() > deadline:
                    log.error("job_outcome_lost", worker=self.name, error=str(e))
                    return None
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)


def _ids(claim: Claim) -> dict[str, str]:
    return {"run_id": claim.run_id, "step_id": claim.step_id, "job_id": claim.job_id}
