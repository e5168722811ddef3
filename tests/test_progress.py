"""Live progress on a terminal: steps done out of total, and which steps are running."""

from __future__ import annotations

import io

from rich.console import Console

from taskloom.progress import Progress
from taskloom.workers.job import StepStatus
from taskloom.workflows.record import RunRecord


def test_progress_shows_done_of_total_and_running_steps() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    record = RunRecord(run_id="r")
    record.step("contact").status = StepStatus.DONE
    record.step("intent").status = StepStatus.RUNNING
    with Progress(total=5, console=console) as progress:
        progress.update({"event": "step_started"}, record)
        progress._live.refresh()  # type: ignore[union-attr]
    text = out.getvalue()
    assert "1/5 steps" in text and "running: intent" in text


def test_progress_is_silent_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress(total=2, console=Console(file=out, force_terminal=False)) as progress:
        progress.update({"event": "step_started"}, RunRecord(run_id="r"))
    assert out.getvalue() == ""
