"""The job protocol: what goes to a worker (StepJob) and what comes back (StepResult).

Both are JSON on the wire, never pickle. A job names a registered kind or tool,
never an import path.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class StepStatus(StrEnum):
    """Where a step is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
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
    attempt: int = Field(1, description="1 for the first try")
    enqueued_at: float = Field(default_factory=time.time, description="epoch seconds")


class StepOutcome(BaseModel):
    """A step's value or error, and what it cost: shared by results and run records."""

    value: Any = None
    error: dict[str, Any] | None = Field(None, description="type, message, raw_output")
    attempts: int = 0
    worker: str = ""
    model: str = ""
    queue_ms: float = 0.0
    run_ms: float = 0.0
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class StepResult(StepOutcome):
    """What one step produced, with its accounting. Merged once per (run_id, step_id)."""

    run_id: str
    step_id: str
    status: StepStatus
    is_retryable: bool = Field(False, description="a transient failure worth another attempt")
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
