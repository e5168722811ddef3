"""The worker's heartbeat: a thread that keeps its leases and registration alive.

Every `lease_s / 3` seconds it extends the leases of the jobs the worker runs, re-queues
the jobs of workers that stopped heartbeating, refreshes what `taskloom workers` shows
(state, busy/total sequences, counts), passes on `cancel` to the running steps, and
starts draining when `taskloom drain` asks. It beats until every job is finished or put
back, so a draining worker keeps its leases.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskloom.config import Settings
from taskloom.errors import RedisUnavailableError
from taskloom.logs import get_logger

if TYPE_CHECKING:
    from taskloom.dispatch.broker import Broker, Claim
    from taskloom.workers.metrics import WorkerMetrics

log = get_logger(__name__)


class Heartbeat:
    """The heartbeat half of `Worker` (which sets these attributes)."""

    broker: Broker
    settings: Settings
    name: str
    key: str
    concurrency: int
    parent_pid: int | None
    jobs_done: int
    jobs_failed: int
    working_s: float
    is_drained: bool
    metrics: WorkerMetrics | None = None  # set by `build_worker` when metrics are served
    loaded_adapters: Callable[[], list[str]] | None = None  # set by `build_worker`
    _lock: threading.Lock
    _running: dict[str, Claim]
    _cancels: dict[str, threading.Event]
    _stopping: threading.Event
    _stopped: threading.Event

    def _register(self) -> None: ...

    def _interrupt_main(self, reason: str, *, job_id: str | None = None) -> None: ...

    def _beat(self) -> None:
        interval_s = self.settings.lease_s / 3
        # Beat until every job is finished or put back: a draining worker keeps its leases.
        while not self._stopped.wait(interval_s):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("worker_orphaned", worker=self.name, parent_pid=self.parent_pid)
                self._stopping.set()
            with self._lock:
                running = list(self._running.values())
            try:
                is_alive, requeued, dead = self.broker.heartbeat(
                    self.key, [c.job_id for c in running]
                )
                if not is_alive:  # our registration expired (e.g. Redis restarted)
                    self._register()
                self.broker.update_worker(
                    self.key,
                    state="busy" if running else "idle",
                    current_job=",".join(c.job_id for c in running),
                    current_step=",".join(f"{c.run_id}/{c.step_id}" for c in running),
                    sequences=f"{len(running)}/{self.concurrency}",
                    successful_job_count=self.jobs_done,
                    failed_job_count=self.jobs_failed,
                    total_working_time=round(self.working_s, 3),
                    adapters=",".join(self.loaded_adapters() if self.loaded_adapters else []),
                )
                if requeued or dead:
                    log.warning("leases_expired", requeued=requeued, dead_lettered=dead)
                    if self.metrics is not None:
                        self.metrics.leases_expired(requeued=requeued, dead=dead)
                if not self._stopping.is_set() and self.broker.is_drain_requested(self.key):
                    log.info("worker_draining", worker=self.name, reason="drain_command")
                    self.is_drained = True
                    self._stopping.set()
                for claim in running:
                    if self.broker.is_cancelled(claim.run_id):
                        if self.concurrency == 1:
                            self._interrupt_main("cancel")
                        with self._lock:
                            event = self._cancels.get(claim.job_id)
                        if event is not None:
                            event.set()
            except RedisUnavailableError as e:
                log.warning("heartbeat_failed", worker=self.name, error=str(e))
            except Exception:  # keep beating: without it, every lease we hold runs out
                log.exception("heartbeat_crashed", worker=self.name)
