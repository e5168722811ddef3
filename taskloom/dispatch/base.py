"""The Dispatcher Protocol: how a ready step reaches a model and comes back."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from taskloom.step import StepJob, StepResult


@runtime_checkable
class Dispatcher(Protocol):
    """Runs ready steps somewhere (in-process, or on workers over Redis).

    `dispatch` blocks until the step has a final result, retries included; it is
    called from many threads at once, one per step in flight.
    """

    def dispatch(self, job: StepJob) -> StepResult:
        """Run the job to a final result (done or failed after its attempts)."""
        ...

    def close(self) -> None:
        """Release what the dispatcher holds (models, connections, processes)."""
        ...
