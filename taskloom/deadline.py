"""The running step's deadline, visible to whatever runs the step.

The worker opens `step_deadline(...)` around a step. Code deep inside it (a decode loop,
a tool, a model call) asks `remaining()` or calls `check()` without the deadline being
passed down every signature. A context variable, so each thread or task has its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from taskloom.errors import StepTimeoutError


@dataclass(frozen=True)
class Deadline:
    """When a step must be done by (`time.monotonic()` seconds) and the limit it came from."""

    at: float
    timeout_s: float
    step_id: str | None = None

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def error(self) -> StepTimeoutError:
        return StepTimeoutError(
            f"ran past its deadline of {self.timeout_s:g} s; raise timeout_s on the step "
            "or TASKLOOM_STEP_TIMEOUT_S if it needs longer",
            timeout_s=self.timeout_s,
            step_id=self.step_id,
        )


_CURRENT: ContextVar[Deadline | None] = ContextVar("taskloom_deadline", default=None)


@contextmanager
def step_deadline(timeout_s: float | None, *, step_id: str | None = None) -> Iterator[None]:
    """Run the block under a deadline `timeout_s` from now; None or 0 means no deadline."""
    limit = Deadline(time.monotonic() + timeout_s, timeout_s, step_id) if timeout_s else None
    token = _CURRENT.set(limit)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Deadline | None:
    """The deadline of the step running in this context, if it has one."""
    return _CURRENT.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once past); None without one."""
    limit = _CURRENT.get()
    return None if limit is None else limit.remaining()


def check() -> None:
    """Raise StepTimeoutError if the current step is past its deadline."""
    limit = _CURRENT.get()
    if limit is not None and limit.remaining() <= 0:
        raise limit.error()
