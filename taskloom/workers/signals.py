"""The worker's signals: SIGTERM/SIGINT drain it, a second one requeues, SIGUSR1 interrupts.

SIGTERM or SIGINT drains (the running steps finish, then the worker exits); a second one
stops them and puts them back on their queue. SIGUSR1 is how the worker's own threads
(a watchdog at a step's deadline, the heartbeat passing on `cancel`) interrupt a step
running on the main thread.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from taskloom.logs import get_logger

if TYPE_CHECKING:
    from taskloom.dispatch.broker import Claim

log = get_logger(__name__)


class Interrupted(BaseException):
    """Steers the main thread out of a running job (cancel, or a second SIGTERM).

    A BaseException, like KeyboardInterrupt, so that a step's own `except Exception`
    can't swallow it; only the worker catches it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Signals:
    """The signal half of `Worker` (which sets these attributes)."""

    name: str
    _running: dict[str, Claim]
    _stopping: threading.Event
    _signals: int
    _interruptible: bool
    _interrupt: str

    def _interrupt_main(self, reason: str, *, job_id: str | None = None) -> None:
        if job_id is not None and job_id not in self._running:
            return  # that step already returned
        self._interrupt = reason
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signal.SIGUSR1)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            self._stopping.set()
            log.info("worker_draining", worker=self.name, signal=signal.Signals(signum).name)
            if self._signals > 1 and self._interruptible:
                raise Interrupted("drain")

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if self._interruptible:
                raise Interrupted(self._interrupt)

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_interrupt)
