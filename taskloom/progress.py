"""Live progress of a run on a terminal: steps done out of total, and what is running."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from taskloom.workers.job import StepStatus
from taskloom.workflows.record import RunRecord

_FINAL = {StepStatus.DONE, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}


class Progress:
    """A one-line live display, refreshed on each step event; silent when not a terminal."""

    def __init__(self, *, total: int | None, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.total = total
        self.started = time.monotonic()
        self._live: Live | None = None
        self._drawn = 0.0
        self.enabled = self.console.is_terminal

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(Text(""), console=self.console, refresh_per_second=8, transient=True)
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
        """Redraw from the record after an event."""
        if self._live is None or time.monotonic() - self._drawn < 0.1:
            return
        self._drawn = time.monotonic()
        record.tally()
        done = sum(s.status in _FINAL for s in record.steps)
        total = max(self.total or 0, len(record.steps))
        running = [s.id for s in record.steps if s.status == StepStatus.RUNNING]
        shown = ", ".join(running[:6]) + (f" +{len(running) - 6}" if len(running) > 6 else "")
        line = Text.assemble(
            (f"{done}/{total} steps", "bold"),
            f"  {time.monotonic() - self.started:5.1f}s",
            f"  {record.totals.prompt_tokens + record.totals.completion_tokens} tokens",
            f"  ${record.totals.cost_usd:.6f}",
            (f"  running: {shown}" if running else "", "cyan"),
        )
        self._live.update(line)
