"""The run record: everything known about one run, as the CLI's `--json` prints it."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from taskloom.errors import JobRejectedError, UserError
from taskloom.step import ErrorInfo, Lifecycle, StepOutcome, StepResult, StepStatus


class RunStatus(Lifecycle):
    """Where a run is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepRecord(StepOutcome):
    """One step of a run, as recorded."""

    id: str
    kind: str
    depends_on: list[str] = Field(default_factory=list, description="the steps it waited for")
    inputs: dict[str, Any] | None = Field(None, description="its inputs, references unresolved")
    status: StepStatus = StepStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None

    def merge(self, result: StepResult) -> None:
        """Take a step's final result (accounting, value, error)."""
        self.status = result.status
        for name in StepOutcome.model_fields:
            setattr(self, name, getattr(result, name))
        self.started_at = result.started_at or self.started_at
        self.finished_at = result.finished_at or time.time()


class Totals(BaseModel):
    """Sums over a run's steps."""

    steps: int = 0
    done: int = 0
    failed: int = 0
    attempts: int = 0
    queue_ms: float = 0.0
    startup_ms: float = 0.0
    run_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    flagged: int = Field(0, description="values not accepted by the calibration: see `review`")


def flagged_values(step: StepRecord) -> list[dict[str, Any]]:
    """The step's values that were not accepted (per field where the kind has fields), each
    with `why`: what its review found."""
    if step.status != StepStatus.DONE or step.accepted is not False:
        return []
    fields = step.meta.get("fields")
    if isinstance(fields, dict) and fields:
        return [
            {
                "step": step.id,
                "field": name,
                "value": f.get("value"),
                "confidence": f.get("confidence"),
                "why": _why(step.meta, f.get("confidence")),
            }
            for name, f in fields.items()
            if isinstance(f, dict) and f.get("accepted") is False
        ]
    return [
        {
            "step": step.id,
            "field": None,
            "value": step.value,
            "confidence": step.confidence,
            "why": _why(step.meta, step.confidence),
        }
    ]


NO_THRESHOLD = "no calibrated threshold yet"
"""Why a value with a confidence was flagged where its calibration has no threshold for
its step: none reached the target precision on the answers it was fitted on."""
FINDINGS = ("an id or number its sources lack", "a quantity its sources do not support")


def _why(meta: dict[str, Any], confidence: Any) -> str:
    """Why a value was flagged: grounding's or the quantities check's finding, else its
    confidence: none, or none past the threshold (`meta.threshold`, None: there is none)."""
    if meta.get("invented"):
        return FINDINGS[0]
    if meta.get("changed"):
        return FINDINGS[1]
    if confidence is None:
        return "no calibrated confidence for its kind"
    if "threshold" in meta and meta["threshold"] is None:
        return NO_THRESHOLD
    return "below the calibrated threshold"


def doubt(value: dict[str, Any]) -> tuple[bool, float]:
    """How a flagged value ranks for review, most doubtful first: a finding, then the
    least confident (no confidence counts as none)."""
    confidence = value.get("confidence")
    sure = confidence if isinstance(confidence, int | float) else 0.0
    return value.get("why") not in FINDINGS, sure


class RunRecord(BaseModel):
    """One execution of a plan or workflow with its inputs."""

    run_id: str
    status: RunStatus = RunStatus.PENDING
    target: str = Field("", description="what was run: a plan file, file.py:name or module:name")
    plan: dict[str, Any] | None = Field(None, description="the plan, when the target is one")
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: ErrorInfo | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    totals: Totals = Field(default_factory=Totals)
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    goal: str | None = Field(None, description="goal runs: the goal, as given")
    route: dict[str, Any] | None = Field(
        None, description="goal runs: the router's decision (slm or llm), score and reason"
    )
    planner: dict[str, Any] | None = Field(
        None,
        description="goal runs: which planner made the (last) plan: name (direct, local or "
        "llm), model, and why",
    )
    rounds: list[dict[str, Any]] = Field(
        default_factory=list,
        description="goal runs: each plan-run-join round (plan, status, joiner decision, cost)",
    )
    escalations: list[dict[str, Any]] = Field(
        default_factory=list, description="SLM steps re-run on the LLM: step, reason, cost"
    )
    budget: dict[str, Any] | None = Field(
        None, description="limits, what was spent, and which budget stopped the run and where"
    )
    review: list[dict[str, Any]] = Field(
        default_factory=list,
        description="values an SLM gave that its review did not accept and no higher tier"
        " replaced, most doubtful first: step, field (None for a whole step), value,"
        " confidence, why",
    )
    reviews: list[dict[str, Any]] = Field(
        default_factory=list,
        description="decisions on steps under review: step, action (approve, edit, reject,"
        " timeout), by, at, before, after, reason",
    )
    _index: dict[str, StepRecord] = PrivateAttr(default_factory=dict)

    def step(self, step_id: str, kind: str = "") -> StepRecord:
        """The record of a step, created (in order of first sight) if new."""
        if len(self._index) != len(self.steps):
            self._index = {s.id: s for s in self.steps}
        if (found := self._index.get(step_id)) is not None:
            return found
        s = StepRecord(id=step_id, kind=kind)
        self.steps.append(s)
        self._index[step_id] = s
        return s

    @property
    def is_resumable(self) -> bool:
        """Whether `taskloom resume` could take the run further: it failed or was
        cancelled, and not by a mistake that running it again would repeat (a target,
        input or tool error, or a workflow its workers don't have)."""
        if self.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            return False
        failed = [s.error for s in self.steps if s.status == StepStatus.FAILED and s.error]
        causes = failed or ([self.error] if self.error else [])
        return not causes or not all(_is_repeated(e) for e in causes)

    def tally(self) -> None:
        """Recompute the totals from the steps."""
        t = Totals(steps=len(self.steps))
        for s in self.steps:
            t.done += s.status == StepStatus.DONE
            t.failed += s.status == StepStatus.FAILED
            t.attempts += s.attempts
            t.queue_ms += s.queue_ms
            t.startup_ms += s.startup_ms
            t.run_ms += s.run_ms
            t.prompt_tokens += s.prompt_tokens
            t.completion_tokens += s.completion_tokens
            t.cost_usd += s.cost_usd
        self.review = sorted((v for s in self.steps for v in flagged_values(s)), key=doubt)
        t.flagged = len(self.review)
        self.totals = t


def _is_repeated(error: ErrorInfo) -> bool:
    """An error that running the same thing again would give again."""
    return error.is_a(UserError) or error.is_a(JobRejectedError)


def run_age_s(run_id: str) -> float | None:
    """Seconds since a run started, read from its id (`YYYYmmdd-HHMMSS-xxxxxx`), if it has one."""
    try:
        started = time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None
    return time.time() - started


def parse_record(data: str | bytes | dict[str, Any]) -> RunRecord:
    """A run record from JSON, keeping what it can of one from an older or newer version.

    Fields that don't validate (an unknown status, a renamed type) are dropped and take
    their defaults; a step without an id is dropped. Nothing here raises for content.
    """
    raw: Any = json.loads(data) if isinstance(data, str | bytes) else data
    if not isinstance(raw, dict):
        raw = {}
    for _ in range(50):  # each pass drops the fields the last one complained about
        try:
            return RunRecord.model_validate(raw)
        except ValidationError as e:
            for err in e.errors():
                _drop(raw, list(err["loc"]))
    return RunRecord(run_id=str(raw.get("run_id", "?")))


def _drop(data: Any, loc: list[str | int]) -> None:
    """Delete the value at `loc`; a step whose id is bad goes whole."""
    if loc[:1] == ["steps"] and (len(loc) <= 2 or loc[2] == "id"):
        loc = loc[:2]
    parent = data
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(parent, dict):
        parent.pop(loc[-1], None)
    elif isinstance(parent, list) and isinstance(loc[-1], int) and loc[-1] < len(parent):
        del parent[loc[-1]]
    if loc == ["run_id"] and isinstance(data, dict):
        data["run_id"] = "?"
