"""Live progress of a run on a terminal: steps done out of total, and what is running."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from taskloom.step import StepStatus
from taskloom.workflows.record import RunRecord


class Progress:
    """A one-line live display of a run; silent when not a terminal.

    Shows steps done out of total, elapsed time, tokens and cost so far, and the running
    steps, with the worker each runs on when `workers_of` can tell (a Redis run).

    Args:
        total: the number of steps, when known up front.
        console: where to draw (stderr by default).
        workers_of: returns {step id: worker} for the running steps; polled twice a second.
        is_quiet: draw nothing (`--json`).
    """

    def __init__(
        self,
        *,
        total: int | None,
        console: Console | None = None,
        workers_of: Callable[[], dict[str, str]] | None = None,
        is_quiet: bool = False,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.total = total
        self.started = time.monotonic()
        self.enabled = self.console.is_terminal and not is_quiet
        self.workers_of = workers_of
        self._record: RunRecord | None = None
        self._workers: dict[str, str] = {}
        self._polled = 0.0
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def update(self, event: dict[str, Any], record: RunRecord) -> None:
        """Take the latest record; the display redraws from it on its own clock."""
        self._record = record

    def watch(self, workers_of: Callable[[], dict[str, str]]) -> None:
        """Name the worker of each running step, from `workers_of` (a Redis run)."""
        self.workers_of = workers_of

    def __rich__(self) -> Text:
        record = self._record
        elapsed = f"  {time.monotonic() - self.started:5.1f}s"
        if record is None:
            return Text.assemble(("starting", "bold"), elapsed)
        record.tally()
        done = sum(s.status.is_final for s in record.steps)
        planned = len(record.plan["steps"]) if record.plan else 0
        total = max(self.total or 0, planned, len(record.steps))
        running = [s.id for s in record.steps if s.status == StepStatus.RUNNING]
        if self.workers_of is not None and time.monotonic() - self._polled > 0.5:
            self._polled = time.monotonic()
            try:
                self._workers = self.workers_of()
            except Exception:  # a display must never break the run it shows
                self._workers = {}
        named = [f"{sid}@{self._workers[sid]}" if sid in self._workers else sid for sid in running]
        shown = ", ".join(named[:6]) + (f" +{len(named) - 6}" if len(named) > 6 else "")
        return Text.assemble(
            (f"{done}/{total} steps", "bold"),
            elapsed,
            f"  {record.totals.prompt_tokens + record.totals.completion_tokens} tokens",
            f"  ${record.totals.cost_usd:.6f}",
            (f"  running: {shown}" if running else "", "cyan"),
        )
