"""Reviews: a person approves, edits or rejects a step's value before the run goes on.

A step with `review: always` (or `uncertain`, when its value or one of its fields was
not accepted by the calibration) waits for a decision after its value exists. Both the
question and the answer live in Redis, next to the step's result (docs/review.md):

- `taskloom:reviews` (a hash, `run_id/step_id` → the pending review): what
  `taskloom reviews` lists. The first ask wins, so a coordinator that asks again after a
  restart keeps the first `asked_at` (the timeout does not restart with it).
- `taskloom:review:<run_id>:<step_id>` (a string, set once): the decision. Approve,
  reject and timeout race through `SET NX`; the first one wins and the others see it.
- `taskloom:review_wake:<run_id>:<step_id>` (a list): pushed on each decision, so the
  coordinator waiting in `BLPOP` wakes at once.

The step's SLM result is already in Redis (keyed by run and step), so a coordinator
that dies while it waits, and the one that drives the run again, take the value from
there: nothing upstream runs again, and the review it asks is the same one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import time
from typing import Any, Literal

import jsonschema
from langgraph.config import get_stream_writer
from pydantic import BaseModel, Field

from taskloom.bank import ExampleBank, Source
from taskloom.config import Settings, key
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.broker import Broker
from taskloom.errors import InputError, RunCancelledError, TaskloomError
from taskloom.logs import get_logger
from taskloom.plan import SLM_KINDS, Step
from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus
from taskloom.tools import KINDS
from taskloom.tools.base import parse_inputs

log = get_logger(__name__)

Policy = Literal["always", "uncertain", "never"]
UNSET: Any = object()


class Decision(BaseModel):
    """What was decided about one review: by whom, when, and the value before and after."""

    run_id: str
    step: str
    action: Literal["approve", "edit", "reject", "timeout"]
    by: str = Field(description="who or what decided: a user name, or `timeout`")
    at: float = Field(default_factory=time.time)
    before: Any = Field(None, description="the value the step proposed")
    after: Any = Field(None, description="the value the run goes on with (None: none)")
    reason: str = ""


def _field(run_id: str, step_id: str) -> str:
    return f"{run_id}/{step_id}"


def why_asked(job: StepJob, result: StepResult, policy: Policy) -> str:
    """Why a review is asked: `always`, or which values the calibration did not accept."""
    if policy == "always":
        return "review: always"
    fields = result.meta.get("fields")
    if isinstance(fields, dict):
        low = [
            f"{name} ({f.get('confidence')})"
            for name, f in fields.items()
            if isinstance(f, dict) and f.get("accepted") is False
        ]
        if low:
            return "not accepted: " + ", ".join(low)
    invented = result.meta.get("invented")
    if invented:
        return "not accepted: invents " + ", ".join(str(i) for i in invented)
    changed = result.meta.get("changed")
    if changed:
        return "not accepted: a quantity its sources lack, " + "; ".join(str(c) for c in changed)
    if result.confidence is not None:
        return f"not accepted: confidence {result.confidence:.2f}"
    return "not accepted"


def needs_review(result: StepResult, policy: Policy) -> bool:
    """Whether a finished step's value goes to a person under this policy."""
    if result.status != StepStatus.DONE or policy == "never":
        return False
    return policy == "always" or result.accepted is False


def output_schema(job: StepJob) -> dict[str, Any] | None:
    """The JSON schema the step's value must fit (an SLM kind's own, else `output`)."""
    kind = KINDS.get(job.kind)
    if kind is None:
        return job.output
    try:
        return kind.schema(parse_inputs(kind, job.kind, job.inputs), job.output)
    except TaskloomError:
        return job.output


class ReviewDesk:
    """Pending reviews and their decisions, in Redis (module doc)."""

    def __init__(self, broker: Broker, *, settings: Settings) -> None:
        self.broker, self.settings = broker, settings

    def ask(self, job: StepJob, result: StepResult, *, why: str) -> dict[str, Any]:
        """Put the review on the desk (once); the pending entry as stored."""
        entry = {
            "run_id": job.run_id,
            "step": job.step_id,
            "kind": job.kind,
            "tool": job.tool,
            "inputs": job.inputs,
            "output": job.output,
            "schema": output_schema(job),
            "value": result.value,
            "confidence": result.confidence,
            "fields": result.meta.get("fields"),
            "why": why,
            "asked_at": time.time(),
            "timeout_s": job.review_timeout_s or self.settings.review_timeout_s,
        }
        data = json.dumps(entry, default=str)
        field = _field(job.run_id, job.step_id)
        r = self.broker.redis
        self.broker.call(lambda: r.hsetnx(key("reviews"), field, data))
        stored = self.entry(job.run_id, job.step_id)
        log.info("review_asked", run_id=job.run_id, step_id=job.step_id, why=why)
        return stored if stored is not None else entry

    def entry(self, run_id: str, step_id: str) -> dict[str, Any] | None:
        """The pending review of a step, if it is still pending."""
        field = _field(run_id, step_id)
        raw = self.broker.call(lambda: self.broker.redis.hget(key("reviews"), field))
        return None if raw is None else dict(json.loads(raw))

    def pending(self) -> list[dict[str, Any]]:
        """Every pending review, oldest first."""
        r = self.broker.redis
        raw = self.broker.call(lambda: r.hgetall(key("reviews")))
        found = [json.loads(v) for v in raw.values()]
        return sorted(found, key=lambda e: float(e.get("asked_at", 0)))

    def decision(self, run_id: str, step_id: str) -> Decision | None:
        """The decision taken on a step's review, if any."""
        raw = self.broker.call(lambda: self.broker.redis.get(key("review", run_id, step_id)))
        return None if raw is None else Decision.model_validate_json(raw)

    def decide(self, decision: Decision) -> Decision:
        """Record a decision unless one was taken first; the one that stands."""
        run_id, step_id = decision.run_id, decision.step
        ttl_s = self.broker.ttl_s

        def write() -> bool:
            won = bool(
                self.broker.redis.set(
                    key("review", run_id, step_id), decision.model_dump_json(), nx=True, ex=ttl_s
                )
            )
            with self.broker.redis.pipeline() as p:
                p.hdel(key("reviews"), _field(run_id, step_id))
                p.rpush(key("review_wake", run_id, step_id), "1")
                p.expire(key("review_wake", run_id, step_id), 60)
                p.execute()
            return won

        won = self.broker.call(write)
        stands = decision if won else self.decision(run_id, step_id)
        log.info("review_decided", run_id=run_id, step_id=step_id, action=decision.action, won=won)
        return stands if stands is not None else decision

    def wait(self, run_id: str, step_id: str, *, deadline: float | None) -> Decision:
        """Block until the review is decided, or decide it as timed out at `deadline`.

        Raises:
            RunCancelledError: the run was cancelled while it waited.
        """
        wake, field = key("review_wake", run_id, step_id), _field(run_id, step_id)
        while True:
            found = self.decision(run_id, step_id)
            if found is not None:
                return found
            if self.broker.is_cancelled(run_id):
                # Nobody need answer it any more.
                self.broker.call(lambda: self.broker.redis.hdel(key("reviews"), field))
                raise RunCancelledError("the run was cancelled", run_id=run_id, step_id=step_id)
            if deadline is not None and time.time() >= deadline:
                entry = self.entry(run_id, step_id) or {}
                return self.decide(
                    Decision(
                        run_id=run_id,
                        step=step_id,
                        action="timeout",
                        by="timeout",
                        before=entry.get("value"),
                        reason=f"no one reviewed it within {entry.get('timeout_s')} s",
                    )
                )
            self.broker.call(lambda: self.broker.redis.blpop([wake], 1))

    # -- what a person does ----------------------------------------------------------

    def approve(
        self, run_id: str, step_id: str, *, value: Any = UNSET, by: str | None = None
    ) -> Decision:
        """Approve a pending review, or approve an edited `value` (checked against the
        step's output schema); the approved value is banked as a person's label.

        Raises:
            InputError: no such pending review, or a value that does not fit the schema.
        """
        entry = self._pending(run_id, step_id)
        before = entry.get("value")
        if value is not UNSET:
            check_value(entry, value)
        after = before if value is UNSET else value
        action: Literal["approve", "edit"] = (
            "approve" if value is UNSET or value == before else "edit"
        )
        decision = self.decide(
            Decision(
                run_id=run_id,
                step=step_id,
                action=action,
                by=by or getpass.getuser(),
                before=before,
                after=after,
            )
        )
        if decision.action in ("approve", "edit") and entry.get("kind") in SLM_KINDS:
            self._bank(entry, decision.after)
        return decision

    def reject(
        self, run_id: str, step_id: str, *, reason: str = "", by: str | None = None
    ) -> Decision:
        """Reject a pending review: the step fails with ReviewRejectedError.

        Raises:
            InputError: no such pending review.
        """
        entry = self._pending(run_id, step_id)
        return self.decide(
            Decision(
                run_id=run_id,
                step=step_id,
                action="reject",
                by=by or getpass.getuser(),
                before=entry.get("value"),
                reason=reason,
            )
        )

    def _pending(self, run_id: str, step_id: str) -> dict[str, Any]:
        entry = self.entry(run_id, step_id)
        if entry is not None:
            return entry
        taken = self.decision(run_id, step_id)
        if taken is not None:
            raise InputError(
                f"run {run_id} step {step_id}: already decided ({taken.action} by {taken.by})"
            )
        raise InputError(
            f"run {run_id} step {step_id}: no pending review; list them with taskloom reviews"
        )

    def _bank(self, entry: dict[str, Any], value: Any) -> None:
        inputs = {k: v for k, v in dict(entry.get("inputs") or {}).items() if k != "examples"}
        step = Step(id=entry["step"], kind=entry["kind"], inputs=inputs, output=entry.get("output"))
        ExampleBank(self.settings.examples_path).add(
            step, value, source=Source.PERSON, run_id=entry["run_id"], step_id=entry["step"]
        )


def check_value(entry: dict[str, Any], value: Any) -> None:
    """Raise InputError, naming the problem, unless `value` fits the step's output schema."""
    schema = entry.get("schema")
    if not isinstance(schema, dict):
        return
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the value"
        raise InputError(
            f"run {entry['run_id']} step {entry['step']}: the edited value does not fit the "
            f"step's output schema at {where}: {error.message}; fix it and approve again"
        )


def outcome(result: StepResult, decision: Decision) -> StepResult:
    """The step's result once its review is decided."""
    if decision.action in ("approve", "edit"):
        return result.model_copy(update={"value": decision.after, "accepted": True})
    if decision.action == "reject":
        why = f"rejected by {decision.by}" + (f": {decision.reason}" if decision.reason else "")
        error = ErrorInfo(
            type="ReviewRejectedError", message=why, run_id=result.run_id, step_id=result.step_id
        )
        failed = {"status": StepStatus.FAILED, "value": None, "error": error}
        return result.model_copy(update=failed)
    error = ErrorInfo(
        type="ReviewTimedOutError",
        message=f"review timed out: {decision.reason}",
        run_id=result.run_id,
        step_id=result.step_id,
    )
    return result.model_copy(update={"status": StepStatus.TIMED_OUT, "value": None, "error": error})


def _emit(event: dict[str, Any]) -> None:
    """Stream an event to the run (inside a LangGraph task); nothing outside one."""
    with contextlib.suppress(RuntimeError):
        get_stream_writer()(event)


class ReviewingDispatcher:
    """Dispatch through `inner`, then hold the step's value for a person when its
    review policy asks (the step's `review`, else the run's `default`).

    Without a desk (steps run inline, no Redis), a step that asks for review fails,
    saying so: its value is never passed on unreviewed."""

    def __init__(
        self, inner: Dispatcher, desk: ReviewDesk | None, *, default: Policy = "never"
    ) -> None:
        self.inner, self.desk, self.default = inner, desk, default

    def dispatch(self, job: StepJob) -> StepResult:
        result = self.inner.dispatch(job)
        policy: Policy = job.review or self.default  # type: ignore[assignment]
        if not needs_review(result, policy):
            return result
        ids = {"run_id": job.run_id, "step_id": job.step_id}
        if self.desk is None:
            why = "review needs Redis: submit the run (taskloom submit) or pass --redis-url"
            error = ErrorInfo(type="ConfigError", message=why, **ids)
            failed = {"status": StepStatus.FAILED, "value": None, "error": error}
            return result.model_copy(update=failed)
        decision = self.desk.decision(job.run_id, job.step_id)
        if decision is None:
            entry = self.desk.ask(job, result, why=why_asked(job, result, policy))
            _emit({"event": "review_waiting", **ids, "kind": job.kind})
            timeout_s = entry.get("timeout_s")
            deadline = float(entry["asked_at"]) + float(timeout_s) if timeout_s else None
            decision = self.desk.wait(job.run_id, job.step_id, deadline=deadline)
        _emit({"event": "review_decided", **ids, "review": decision.model_dump(mode="json")})
        return outcome(result, decision)

    def close(self) -> None:
        self.inner.close()


def reviewing(inner: Dispatcher, over: Dispatcher, settings: Settings) -> ReviewingDispatcher:
    """`inner` with reviews, on the desk of `over`'s Redis when it dispatches over one."""
    broker = getattr(over, "broker", None)
    desk = ReviewDesk(broker, settings=settings) if isinstance(broker, Broker) else None
    return ReviewingDispatcher(inner, desk, default=settings.review)
