"""A step's deadline, enforced from outside the step.

Code that looks at its deadline (the decode loop, a tool calling
`taskloom.deadline.check()`) stops by itself with `StepTimeoutError`. For code that does
not look, the watchdog acts, on its own thread, in two stages:

1. At the deadline (plus a moment, so cooperative code stops first) it calls
   `on_deadline`: the worker interrupts its main thread, which stops a Python tool
   sleeping, waiting on a socket or looping in Python, in place.
2. If the step still holds the thread `grace_s` later (a C call that never returns to
   the interpreter, or a tool that swallows the interrupt), it calls `on_stuck`: the
   worker writes the timeout outcome itself and restarts (see `Worker._restart`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from taskloom.config import Settings
from taskloom.deadline import Deadline
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Claim
from taskloom.step import ErrorInfo, StepResult, StepStatus

EXIT_RESTART = 75  # EX_TEMPFAIL: a supervisor should start the worker again
COOPERATIVE_MARGIN_S = 0.2  # cooperative code gets the first chance to stop itself
STUCK_GRACE_S = 2.0  # how long an interrupted step may take to let go of the thread


class StepWatchdog:
    """Watch one running step; `stop()` once it returned.

    Args:
        timeout_s: the step's deadline, from now.
        on_deadline: called once the deadline passed and the step still runs.
        on_stuck: called if the step still runs `grace_s` after `on_deadline`.
        grace_s: the second stage's wait.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        on_deadline: Callable[[], None],
        on_stuck: Callable[[], None],
        grace_s: float = STUCK_GRACE_S,
    ) -> None:
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self._on_deadline = on_deadline
        self._on_stuck = on_stuck
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="taskloom-deadline", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The step returned: nothing more to do."""
        self._done.set()

    def _watch(self) -> None:
        if self._done.wait(self.timeout_s + COOPERATIVE_MARGIN_S):
            return
        self._on_deadline()
        if self._done.wait(self.grace_s):
            return
        self._on_stuck()


def timeout_of(envelope: payload.Envelope, settings: Settings) -> float | None:
    """A step job's deadline in seconds: its own `timeout_s`, else the worker's default."""
    value = envelope.body.get("timeout_s")
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return settings.step_timeout_s


def timed_out(
    claim: Claim, envelope: payload.Envelope, *, timeout_s: float, worker: str
) -> StepResult:
    """The failed attempt of a step stopped at its deadline (StepTimeoutError)."""
    error = ErrorInfo.of(Deadline(0.0, timeout_s, claim.step_id).error())
    return StepResult(
        run_id=claim.run_id,
        step_id=claim.step_id,
        status=StepStatus.FAILED,
        attempts=int(envelope.body.get("attempt", 1)),
        error=error.model_copy(update={"run_id": claim.run_id}),
        worker=worker,
        finished_at=time.time(),
    )


def restart_process(*, is_exec: bool) -> NoReturn:
    """Replace this process with a fresh one (same arguments), or exit for a supervisor."""
    sys.stdout.flush()
    sys.stderr.flush()
    if is_exec:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    os._exit(EXIT_RESTART)
