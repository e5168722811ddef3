"""A run's trace on the coordinator: the run span, and a step span per dispatched step.

The runner opens the run span and wraps its dispatcher in `TracedDispatcher`, so each
step's span is a child of the run span whichever thread LangGraph runs the step on; the
dispatcher's attempts are events on it (`dispatch.base.with_retries`), and the job
envelope carries its context to the worker, whose `execute` span is its child.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taskloom import tracing
from taskloom.dispatch.base import Dispatcher
from taskloom.step import StepJob, StepResult, StepStatus
from taskloom.workflows.record import RunRecord


class TracedDispatcher:
    """`inner`, each dispatch inside a `step <id>` span under the run's span.

    Args:
        inner: the dispatcher that runs the steps.
        parent: the run span's context (`tracing.carrier()` inside it).
    """

    def __init__(self, inner: Dispatcher, parent: tracing.Carrier) -> None:
        self.inner = inner
        self.parent = parent

    def dispatch(self, job: StepJob) -> StepResult:
        attributes = {
            "taskloom.run_id": job.run_id,
            "taskloom.step_id": job.step_id,
            "taskloom.kind": job.kind,
            "taskloom.queue": job.queue,
            "taskloom.model": job.model,
        }
        with tracing.span(f"step {job.step_id}", parent=self.parent, attributes=attributes) as s:
            result = self.inner.dispatch(job)
            tracing.set_attributes(s, tracing.result_attributes(result))
            if result.status != StepStatus.DONE:
                error = result.error
                tracing.fail(
                    s, error.type if error else "StepFailed", error.message if error else ""
                )
        return result

    def close(self) -> None:
        self.inner.close()


@contextmanager
def run_span(record: RunRecord) -> Iterator[tracing.Carrier]:
    """The run's span around the block; yields its context for the step spans (empty
    when tracing is off). The record's final status and totals are set on it."""
    name = f"run {record.target or record.run_id}"
    with tracing.span(name, attributes={"taskloom.run_id": record.run_id}) as s:
        yield tracing.carrier()
        tracing.set_attributes(
            s,
            {
                "taskloom.status": record.status.value,
                "taskloom.steps": len(record.steps),
                "gen_ai.usage.input_tokens": record.totals.prompt_tokens,
                "gen_ai.usage.output_tokens": record.totals.completion_tokens,
            },
        )
        if record.error is not None:
            tracing.fail(s, record.error.type, record.error.message)
