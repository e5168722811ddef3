"""A step's cancellation, visible to the model call running it (as `deadline` is).

The worker opens `cancel_scope(event)` around a step that runs beside others; the model
host captures `current()` when a request is submitted and stops that one sequence once
the event is set. A context variable, so each thread running a step has its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar[threading.Event | None] = ContextVar("taskloom_cancel", default=None)


@contextmanager
def cancel_scope(event: threading.Event) -> Iterator[None]:
    """Run the block so that model calls inside it stop once `event` is set."""
    token = _CURRENT.set(event)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> threading.Event | None:
    """The cancel event of the step running in this context, if it has one."""
    return _CURRENT.get()
