"""Escalation: an SLM step that the small model cannot do reliably is re-run on the LLM.

`EscalatingDispatcher` wraps any Dispatcher (inline or Redis). A step escalates when
its output failed validation after its re-asks; when the calibration did not accept it
(`accepted: false`, unless `escalate_flagged` is off): then for `extract` and
`fill_slots` only the flagged fields take the LLM's values, and the accepted ones keep
the SLM's; or when its confidence is below the `escalate_below` floor. It needs an LLM
configured and a budget that allows it. The same kind runs on the LLM's ChatModel
(`run_task` works with any ChatModel), so the step's output keeps its shape.
`kind: llm` steps always run on the LLM, here.
Every escalation (or one the budget refused) is kept in `escalations`.

A run that sets `target_precision` judges each SLM answer again by the threshold its
calibration gives for that precision (`Calibration.at`), so the run's choice holds
whatever the workers were told; a lesson's threshold is chosen again too, on the
frontier of the answers it was chosen on (`Lesson.judging_at`).

The cascade learns (docs/learning.md): an SLM step whose signature has a lesson
(`taskloom learn`) runs with the lesson's examples, and its answers are accepted by the
lesson's threshold; every accepted LLM answer of an SLM step goes into the example bank,
with what the small model had answered (`bank.slm_answer`). An `audit_share` of the
accepted SLM answers is re-run on the LLM too (reason "audit"), its answer standing
whole: banked, those measure the precision of what is accepted (`taskloom learn`).

Goal runs and target runs (plans, workflows) both dispatch through it, so the budgets
(`max_cost_usd`, `max_llm_calls`, `max_steps`) bound SLM steps, escalations and
`kind: llm` steps alike.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from taskloom.agents.budget import Budget
from taskloom.bank import ExampleBank, Source, slm_answer
from taskloom.calibration import judge_at, load, signature
from taskloom.chat import ChatModel, Completion
from taskloom.chat.openai import OpenAIChatModel
from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.errors import (
    BudgetExceededError,
    OutputValidationError,
    TaskInputError,
    TaskloomError,
)
from taskloom.lessons import Lesson, Lessons, fields_of, judge, teach
from taskloom.logs import get_logger
from taskloom.plan import SLM_KINDS, Step, StepKind
from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus
from taskloom.tools import run_task
from taskloom.tools.llm import run_llm_step
from taskloom.workflows.record import RunRecord

log = get_logger(__name__)


class EscalatingDispatcher:
    """Dispatch to `inner`; re-run on `llm` what the SLM could not do reliably.

    Args:
        inner: where SLM and tool steps run (inline or Redis).
        llm: the large model; None disables escalation (and `kind: llm` fails clearly).
        budget: the run's budget: steps, LLM calls and dollars.
        settings: `escalate_below`, `output_retries`, prices.
    """

    def __init__(
        self,
        inner: Dispatcher,
        *,
        llm: ChatModel | None,
        budget: Budget,
        settings: Settings,
    ) -> None:
        self.inner = inner
        self.llm = llm
        self.budget = budget
        self.settings = settings
        self.escalations: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        learning = settings.examples_path
        self.lessons = Lessons(learning / "learned") if settings.learned else None
        self.bank = ExampleBank(learning) if settings.bank_answers else None
        target = settings.target_precision
        # Set for this run, the target is applied here too, whatever the workers were told.
        self.calibration = None if target is None else load(settings.calibration, target=target)
        self._draw = random.Random()

    @classmethod
    def for_target(
        cls,
        inner: Dispatcher,
        settings: Settings,
        *,
        max_steps: int | None = None,
        resumed: RunRecord | None = None,
    ) -> EscalatingDispatcher:
        """The dispatcher of a plan or workflow run: the budgets `settings` set (and
        `max_steps`), the endpoint's LLM (if one is configured) for escalations and
        `kind: llm` steps. A resumed run goes on under the budget its record kept."""
        budget = Budget.from_settings(settings)
        budget.max_steps = max_steps
        if resumed is not None:
            budget.restore(resumed.budget)
        llm = OpenAIChatModel.from_settings(settings)
        escalating = cls(inner, llm=llm, budget=budget, settings=settings)
        if resumed is not None:
            escalating.escalations = list(resumed.escalations)
        return escalating

    def annotate(self, record: RunRecord) -> RunRecord:
        """Write the escalations and the budget's summary into the run's record."""
        record.escalations = list(self.escalations)
        record.budget = self.budget.summary()
        return record

    def dispatch(self, job: StepJob) -> StepResult:
        try:
            self.budget.check_steps(1, f"step {job.step_id}")
        except BudgetExceededError as e:
            return _failed(job, e, time.time())
        if job.kind == StepKind.LLM:
            return self._on_llm(job, None, reason="kind llm")
        lesson = self.lessons.of(job) if self.lessons is not None else None
        result = self._on_slm(job, lesson)
        self.budget.record_steps(1, result.cost_usd)
        reason = self.reason_to_escalate(job, result)
        if reason is None and self._audits(job, result):
            reason = AUDIT
        if reason is None or self.llm is None:
            return result
        try:
            self.budget.check_llm(f"escalation of step {job.step_id}")
        except BudgetExceededError as e:
            self._note(job, result, None, reason=reason, skipped=str(e))
            return result
        return self._on_llm(job, result, reason=reason, lesson=lesson)

    def _on_slm(self, job: StepJob, lesson: Lesson | None) -> StepResult:
        """Run the step on the inner dispatcher, with its signature's lesson if it has one."""
        if lesson is None or self.lessons is None:
            result = self.inner.dispatch(job)
            if self.calibration is None or job.kind not in SLM_KINDS:
                return result
            sig = signature(job.kind, job.inputs, job.output)
            return judge_at(result, self.calibration.threshold(job.kind, sig))
        if self.calibration is not None:
            lesson = lesson.judging_at(self.calibration.target_precision, self.calibration.level)
        taught = self.inner.dispatch(teach(job, lesson, self.lessons.root))
        calibration = self.calibration
        if calibration is None and lesson.inherits:  # judged by the calibration's threshold
            calibration = load(self.settings.calibration)
        return judge(taught, lesson, calibration)

    def reason_to_escalate(self, job: StepJob, result: StepResult) -> str | None:
        """Why this SLM result should go to the LLM, or None when it should stand."""
        if job.kind not in SLM_KINDS:
            return None
        if result.status == StepStatus.FAILED:
            if result.error is not None and result.error.is_a(OutputValidationError):
                return "output failed validation after its retries"
            return None
        if result.accepted is False and self.settings.escalate_flagged:
            flagged = [name for name, f in fields_of(result).items() if not f.get("accepted")]
            what = f"fields {', '.join(flagged)}" if flagged else "its answer"
            return f"{what} not accepted by the calibration (confidence {result.confidence})"
        value = result.value
        confidence = result.confidence
        if confidence is None and isinstance(value, dict):
            confidence = value.get("confidence")  # a result from before `confidence` existed
        if isinstance(confidence, int | float) and confidence < self.settings.escalate_below:
            return f"confidence {confidence:.2f} below {self.settings.escalate_below:.2f}"
        return None

    def _audits(self, job: StepJob, result: StepResult) -> bool:
        """Whether this accepted SLM answer is drawn for the audit (`audit_share`)."""
        share = self.settings.audit_share
        return (
            share > 0
            and self.llm is not None
            and job.kind in SLM_KINDS
            and result.accepted is True
            and self._draw.random() < share
        )

    def _on_llm(
        self, job: StepJob, slm: StepResult | None, *, reason: str, lesson: Lesson | None = None
    ) -> StepResult:
        started = time.time()
        if self.llm is None:
            e = TaskInputError(
                "kind 'llm' needs an LLM endpoint; set OPENAI_BASE_URL", step_id=job.step_id
            )
            return _failed(job, e, started)
        log.info("step_escalating", run_id=job.run_id, step_id=job.step_id, reason=reason)
        try:
            if slm is None:
                self.budget.check_llm(f"step {job.step_id}")
                outcome = run_llm_step(job, self.llm, output_retries=self.settings.output_retries)
            else:
                outcome = run_task(
                    job.kind,
                    job.inputs,
                    output=job.output,
                    model=self.llm,
                    output_retries=self.settings.output_retries,
                    is_reviewed=False,  # the LLM's own nulls stand
                )
        except TaskloomError as e:
            result = _failed(job, e, started)
            if slm is None:
                return result
            self._note(job, slm, result, reason=reason)
            if slm.status == StepStatus.DONE:
                # The next tier could not answer: the SLM's answer stands, still flagged.
                log.warning("escalation_failed", step_id=job.step_id, error=e.message)
                return slm
            return result
        u = outcome.usage
        spent = Completion(
            text="",
            model=self.llm.name,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
        )
        call = self.budget.record_llm(
            "escalation" if slm is not None else "llm_step",
            self.llm,
            spent,
            self.settings,
            where=f"step {job.step_id}",
            calls=max(1, u.calls),
        )
        finished = time.time()
        value, meta = outcome.value, outcome.meta
        if slm is not None and fields_of(slm) and reason != AUDIT:
            value, meta = keep_accepted(job.kind, slm, outcome.value)
        result = StepResult(
            run_id=job.run_id,
            step_id=job.step_id,
            status=StepStatus.DONE,
            value=value,
            attempts=job.attempt + (slm.attempts if slm else 0),
            worker=f"llm{'+' + slm.worker if slm and slm.worker else ''}",
            model=self.llm.name,
            run_ms=(finished - started) * 1000 + (slm.run_ms if slm else 0.0),
            queue_ms=slm.queue_ms if slm else 0.0,
            startup_ms=slm.startup_ms if slm else 0.0,
            retried=slm.retried if slm else [],
            prompt_tokens=u.prompt_tokens + (slm.prompt_tokens if slm else 0),
            completion_tokens=u.completion_tokens + (slm.completion_tokens if slm else 0),
            cost_usd=call.cost_usd + (slm.cost_usd if slm else 0.0),
            started_at=slm.started_at if slm else started,
            finished_at=finished,
            confidence=outcome.confidence,
            accepted=True,  # the LLM's answer is the higher tier's: it stands
            meta=meta,
        )
        if slm is None:
            self.budget.record_steps(1, 0.0)
        else:
            self._note(job, slm, result, reason=reason, llm_cost_usd=call.cost_usd)
            self._learn_from(job, value, slm, lesson, audited=reason == AUDIT)
        return result

    def _learn_from(
        self, job: StepJob, value: Any, slm: StepResult, lesson: Lesson | None, *, audited: bool
    ) -> None:
        """Keep the LLM's answer to an SLM step in the bank, as a labelled example, with
        what the small model had answered."""
        if self.bank is None:
            return
        # `job` is the step as written: a lesson's examples are not in it.
        step = Step(id=job.step_id, kind=job.kind, inputs=job.inputs, output=job.output)
        answered = slm_answer(
            slm,
            as_written=lesson is None or lesson.as_written,
            flagged_escalate=self.settings.escalate_flagged,
            audited=audited,
            lesson_at=lesson.at if lesson is not None else None,
        )
        try:
            self.bank.add(step, value, source=Source.LLM, run_id=job.run_id, slm=answered)
        except OSError as e:  # a full or read-only disk must not fail the step
            log.warning("example_not_banked", step_id=job.step_id, error=str(e))

    def _note(
        self,
        job: StepJob,
        slm: StepResult,
        llm: StepResult | None,
        *,
        reason: str,
        skipped: str | None = None,
        llm_cost_usd: float = 0.0,
    ) -> None:
        entry = {
            "step_id": job.step_id,
            "kind": job.kind,
            "reason": reason,
            "slm_model": slm.model,
            "slm_value": slm.value,
            "slm_cost_usd": slm.cost_usd,
            "llm_model": self.llm.name if self.llm else None,
            "llm_cost_usd": llm_cost_usd,
            "status": "skipped" if skipped else (llm.status.value if llm else "failed"),
        }
        if skipped:
            entry["skipped"] = skipped
        with self._lock:
            self.escalations.append(entry)

    def close(self) -> None:
        self.inner.close()


AUDIT = "audit: a random share of accepted answers is checked by the LLM (audit_share)"


def keep_accepted(kind: str, slm: StepResult, llm_value: Any) -> tuple[Any, dict[str, Any]]:
    """Per field: the SLM's value where it was accepted, the LLM's where it was flagged.

    Returns the merged value (in the kind's output shape) and its `meta.fields`, each
    field marked with the tier that gave it.
    """
    slm_fields = fields_of(slm)
    llm_flat = llm_value.get("slots", {}) if kind == StepKind.FILL_SLOTS else llm_value
    if not isinstance(llm_flat, dict):
        return llm_value, {}
    merged, fields = {}, {}
    for name, f in slm_fields.items():
        ours = bool(f.get("accepted"))
        merged[name] = f.get("value") if ours else llm_flat.get(name)
        fields[name] = {
            **f,
            "value": merged[name],
            "accepted": True,
            "by": "slm" if ours else "llm",
        }
    for name, v in llm_flat.items():
        merged.setdefault(name, v)
    if kind == StepKind.FILL_SLOTS:
        missing = [n for n, v in merged.items() if v is None]
        return {"slots": merged, "missing": missing}, {"fields": fields}
    return merged, {"fields": fields}


def _failed(job: StepJob, e: TaskloomError, started: float) -> StepResult:
    return StepResult(
        run_id=job.run_id,
        step_id=job.step_id,
        status=StepStatus.FAILED,
        error=ErrorInfo.of(e),
        attempts=job.attempt,
        started_at=started,
        finished_at=time.time(),
    )
