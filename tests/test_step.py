"""Errors cross processes as ErrorInfo and keep their meaning; statuses know if they're final."""

from __future__ import annotations

from taskloom.errors import (
    ModelError,
    OutputValidationError,
    PlanValidationError,
    SteeringError,
    TaskloomError,
    ToolError,
)
from taskloom.step import ErrorInfo, StepResult, StepStatus
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.store import MemoryRunStore


def test_an_error_comes_back_as_its_own_class_with_its_context() -> None:
    sent = OutputValidationError("bad json", raw_output='{"n": ', run_id="r1", step_id="s1")
    wire = ErrorInfo.of(sent).model_dump_json()
    info = ErrorInfo.model_validate_json(wire)
    assert (info.type, info.run_id, info.step_id, info.raw_output) == (
        "OutputValidationError",
        "r1",
        "s1",
        '{"n": ',
    )
    assert info.is_a(SteeringError) and info.is_a(TaskloomError) and not info.is_a(ToolError)
    again = info.to_exception()
    assert isinstance(again, OutputValidationError)
    assert str(again) == str(sent) and again.raw_output == '{"n": '


def test_retryability_is_the_error_class_s() -> None:
    assert not ErrorInfo.of(ToolError("no such tool")).is_retryable  # the user's mistake
    assert not ErrorInfo.of(OutputValidationError("x", raw_output="")).is_retryable  # re-asked
    assert ErrorInfo.of(ModelError("llama_decode returned 1")).is_retryable
    assert ErrorInfo.of(ConnectionError("reset")).is_retryable  # not ours: maybe transient
    unknown = ErrorInfo(type="SomethingNewError", message="from a newer worker")
    assert type(unknown.to_exception()) is TaskloomError and not unknown.is_a(ToolError)


def test_a_result_is_retryable_only_when_it_failed_with_a_retryable_error() -> None:
    error = ErrorInfo.of(ModelError("decode"))
    failed = StepResult(run_id="r", step_id="s", status=StepStatus.FAILED, error=error)
    assert failed.is_retryable
    done = failed.model_copy(update={"status": StepStatus.DONE})
    assert not done.is_retryable


def test_final_statuses_are_defined_once() -> None:
    assert {s for s in StepStatus if s.is_final} == {
        "done",
        "failed",
        "timed_out",
        "skipped",
        "cancelled",
    }
    assert {s for s in RunStatus if s.is_final} == {"done", "failed", "cancelled"}


def test_plan_errors_keep_every_problem_across_the_wire() -> None:
    info = ErrorInfo.of(PlanValidationError(["a", "b"]))
    assert info.is_a(PlanValidationError) and "2 problems" in info.message


def test_the_memory_store_copies_records_in_and_out() -> None:
    store = MemoryRunStore()
    record = RunRecord(run_id="r1")
    store.save(record)
    record.status = RunStatus.DONE  # a later change is not seen until saved again
    assert store.load("r1").status == RunStatus.PENDING
