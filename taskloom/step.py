"""The job protocol: what goes to a worker (StepJob) and what comes back (StepResult).

Both are JSON on the wire, never pickle. A job names a registered kind or tool,
never an import path.
"""

from __future__ import annotations

import builtins
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from taskloom.errors import ERRORS, TaskloomError


class Lifecycle(StrEnum):
    """A status that starts pending, runs, and ends; `is_final` is defined once here."""

    @property
    def is_final(self) -> bool:
        """Whether it is over: neither pending nor running."""
        return self.value not in ("pending", "running", "waiting")


class StepStatus(Lifecycle):
    """Where a step is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StepJob(BaseModel):
    """One step, with its references resolved, ready to run anywhere."""

    run_id: str
    step_id: str
    kind: str = Field(description="an SLM kind, 'tool' or 'llm'")
    inputs: dict[str, Any] = Field(default_factory=dict, description="resolved inputs")
    output: dict[str, Any] | None = Field(None, description="the output JSON schema, if any")
    tool: str | None = Field(None, description="the registered tool, for kind 'tool'")
    queue: str | None = None
    model: str | None = None
    timeout_s: float | None = Field(
        None, gt=0, description="the step's deadline per attempt; None: Settings.step_timeout_s"
    )
    review: str | None = Field(
        None, description="always | uncertain | never: when a person reviews the value"
    )
    review_timeout_s: float | None = Field(
        None, gt=0, description="how long a review may wait; None: Settings.review_timeout_s"
    )
    adapter: str | None = Field(
        None,
        description="a LoRA adapter GGUF (taskloom learn) the worker applies for this step;"
        " None: the model as it is",
    )
    attempt: int = Field(1, description="1 for the first try")
    enqueued_at: float = Field(default_factory=time.time, description="epoch seconds")


class ErrorInfo(BaseModel):
    """An error as data: it crosses processes and comes back as the same class."""

    type: str = Field(description="the error's class name, e.g. OutputValidationError")
    message: str = Field(description="one line that says what is wrong and what to do")
    run_id: str | None = None
    step_id: str | None = None
    raw_output: str | None = Field(None, description="the model's last output, if it failed")
    is_retryable: bool = Field(False, description="another attempt could succeed")

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """Describe an exception; one that is not a TaskloomError counts as retryable."""
        if not isinstance(exc, TaskloomError):
            return cls(type=type(exc).__name__, message=str(exc), is_retryable=True)
        return cls(
            type=type(exc).__name__,
            message=str(exc),
            run_id=exc.run_id,
            step_id=exc.step_id,
            raw_output=getattr(exc, "raw_output", None),
            is_retryable=exc.is_retryable,
        )

    def is_a(self, cls: builtins.type[TaskloomError]) -> bool:
        """Whether the error was a `cls` (or a subclass of it)."""
        known = ERRORS.get(self.type)
        return known is not None and issubclass(known, cls)

    def to_exception(self) -> TaskloomError:
        """The error again, as its own class (TaskloomError for one we don't know)."""
        cls = ERRORS.get(self.type, TaskloomError)
        exc = cls.__new__(cls)
        message = self.message.removeprefix(f"step {self.step_id!r}: ")
        Exception.__init__(exc, message)
        exc.message, exc.run_id, exc.step_id = message, self.run_id, self.step_id
        if self.raw_output is not None:
            exc.raw_output = self.raw_output  # type: ignore[attr-defined]
        return exc


class StepOutcome(BaseModel):
    """A step's value or error, and what it cost: shared by results and run records."""

    value: Any = None
    error: ErrorInfo | None = Field(None, description="why the step failed")
    attempts: int = Field(
        0, description="times the step was run: retries, and deliveries whose worker was lost"
    )
    retried: list[str] = Field(
        default_factory=list, description="why each earlier attempt did not count, in order"
    )
    worker: str = ""
    model: str = ""
    queue_ms: float = Field(0.0, description="waiting in the queue for a ready worker")
    startup_ms: float = Field(
        0.0,
        description="waiting for the worker that ran it to start (process start, model load)",
    )
    run_ms: float = 0.0
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    decodes: int = Field(
        0,
        description="model evaluations the generation took (fewer than completion_tokens"
        " when drafted tokens were accepted; 0: not a local model)",
    )
    drafted: int = Field(0, description="tokens drafted for verification (speculation)")
    draft_accepted: int = Field(0, description="drafted tokens the model's own picks agreed with")
    cost_usd: float = 0.0
    confidence: float | None = Field(
        None,
        description="the probability that the output is right (0..1, calibrated); for"
        " extract and fill_slots that of its least certain field; None: the kind does not say",
    )
    accepted: bool | None = Field(
        None,
        description="whether the output is accepted as right by the calibrated threshold;"
        " False: flagged for the next tier (the LLM, or review); None: not judged (tools)",
    )
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="how the kind decided: `fields` (per field: value, confidence,"
        " accepted), `absence` (per nullable field: present or absent)",
    )


class StepResult(StepOutcome):
    """What one step produced, with its accounting. Merged once per (run_id, step_id)."""

    run_id: str
    step_id: str
    status: StepStatus
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    sig: str | None = Field(None, description="the writing worker's HMAC, with a secret set")

    @property
    def is_retryable(self) -> bool:
        """A failure that another attempt could fix."""
        is_failed = self.status == StepStatus.FAILED
        return is_failed and self.error is not None and self.error.is_retryable
