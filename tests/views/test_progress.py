"""Live progress on a terminal: done/total, elapsed, tokens, cost, running steps and workers."""

from __future__ import annotations

import io

from rich.console import Console

from taskloom.step import StepStatus
from taskloom.views.progress import Progress
from taskloom.workflows.record import RunRecord


def test_progress_shows_done_of_total_running_steps_and_their_workers() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    record = RunRecord(run_id="r")
    done = record.step("contact")
    done.status, done.prompt_tokens, done.cost_usd = StepStatus.DONE, 120, 0.0025
    record.step("intent").status = StepStatus.RUNNING
    record.step("docs").status = StepStatus.RUNNING
    with Progress(total=5, console=console, workers_of=lambda: {"intent": "gpu1"}) as progress:
        progress.update({"event": "step_started"}, record)
        progress._live.refresh()  # type: ignore[union-attr]
    text = out.getvalue()
    assert "1/5 steps" in text and "120 tokens" in text and "$0.002500" in text
    assert "running: intent@gpu1, docs" in text


def test_progress_is_silent_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress(total=2, console=Console(file=out, force_terminal=False)) as progress:
        progress.update({"event": "step_started"}, RunRecord(run_id="r"))
    assert out.getvalue() == ""
