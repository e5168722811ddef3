"""Resuming a goal run from its record, where it stopped.

A goal run's record is saved as it goes (`goal.Rounds`): every finished round, every
join, and the steps of the round that is running. `resume_goal` reads it back:

- the round that was running (or the last one, if it failed) runs again, and the steps
  that had finished return their recorded results instead of running again;
- then the joiner and replanning go on, under the budget the record kept;
- a finished run is returned as it is.

What can't be resumed is refused with one line: a record without its goal, or a round
that stopped while its plan was still streaming in (its plan was never complete).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.agents.goal import GoalRun, Rounds, learned_from
from taskloom.agents.router import Route
from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.errors import InputError
from taskloom.logs import get_logger
from taskloom.plan import Plan
from taskloom.step import StepJob, StepOutcome, StepResult, StepStatus
from taskloom.workflows.record import RunRecord, RunStatus, StepRecord
from taskloom.workflows.runner import OnEvent
from taskloom.workflows.store import RunStore

log = get_logger(__name__)


class ReplayDispatcher:
    """Dispatch through `inner`, except steps that already finished: those return their
    recorded results, without running or spending again."""

    def __init__(self, inner: Dispatcher, done: dict[str, StepResult]) -> None:
        self.inner, self.done = inner, done

    def dispatch(self, job: StepJob) -> StepResult:
        found = self.done.get(job.step_id)
        return found if found is not None else self.inner.dispatch(job)

    def close(self) -> None:
        self.inner.close()


def resume_goal(
    record: RunRecord,
    agents: GoalRun,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: RunStore | None = None,
    on_event: OnEvent | None = None,
) -> RunRecord:
    """Continue a crashed or failed goal run; finished steps are kept.

    `agents.budget` should carry the record's spending (`Budget.resumed`).

    Raises:
        InputError: the run can't be resumed (the line says why).
    """
    if record.status == RunStatus.DONE:
        return record
    if not record.goal or record.route is None:
        raise InputError(
            f"run {record.run_id}: its record has no goal or route (an older or foreign "
            "record), so it can't be resumed; run the goal again"
        )
    escalating = EscalatingDispatcher(
        dispatcher, llm=agents.llm, budget=agents.budget, settings=settings
    )
    escalating.escalations = list(record.escalations)
    ctx = Rounds(
        record.goal,
        record.inputs,
        agents,
        escalating,
        settings=settings,
        checkpointer=checkpointer,
        on_event=on_event,
        run_id=record.run_id,
        store=store,
        route=_route(record.route),
        started=record.created_at,
    )
    entries = [dict(r) for r in record.rounds]
    ctx.records = _round_records(record, entries)
    ctx.rounds = [r for r in entries if r.get("status") != RunStatus.RUNNING.value]
    log.info("goal_resuming", run_id=record.run_id, rounds=len(ctx.rounds))
    _go_on(ctx, entries)
    return ctx.finish()


def _go_on(ctx: Rounds, entries: list[dict[str, Any]]) -> None:
    """Pick up after the last entry: rerun its round, join it, replan, or start."""
    ran = [r for r in entries if "run_id" in r]
    joins = sum("join" in r for r in entries)  # planning rounds joined so far
    if not ran:  # stopped before any round ran
        ctx.start()
        return
    last = ran[-1]
    if last.get("plan") is None:
        raise InputError(
            f"run {ctx.run_id}: it stopped while round {last['round']}'s plan was still "
            "streaming in, so that plan is incomplete and can't be resumed; run the goal again"
        )
    join = last.get("join")
    if last["status"] == RunStatus.DONE.value and join is not None:
        if join.get("action") == "replan":
            learned = learned_from(join.get("reason", ""), ctx.records[-1])
            ctx.plan_rounds(start=joins, learned=learned)
        return
    if last["status"] != RunStatus.DONE.value:  # it stopped or failed: run it again
        redo = ctx.records.pop()
        if last in ctx.rounds:
            ctx.rounds.remove(last)
        plan = Plan.model_validate(last["plan"])
        done = {s.id: _result(redo.run_id, s) for s in redo.steps if s.status == StepStatus.DONE}
        inner = ctx.dispatcher
        ctx.dispatcher = ReplayDispatcher(inner, done)
        try:
            again = ctx.run_plan(plan, source=last["source"], planner=last.get("planner"))
        finally:
            ctx.dispatcher = inner
        joins -= join is not None
    else:
        again = ctx.records[-1]
    if last["source"] != "router":  # a planned round: the joiner and replanning go on
        ctx.plan_rounds(start=joins, first=again)


def _round_records(record: RunRecord, entries: list[dict[str, Any]]) -> list[RunRecord]:
    """Each round's own record, from the goal record (round n's steps are `rN.<id>`)."""
    out = []
    for n, entry in enumerate((r for r in entries if "run_id" in r), start=1):
        prefix = f"r{n}."
        part = RunRecord(
            run_id=entry["run_id"],
            target=f"goal ({entry.get('source', '')})",
            plan=entry.get("plan"),
            inputs=record.inputs,
            status=RunStatus(entry.get("status", "failed")),
            output=entry.get("output"),
        )
        for s in record.steps:
            if n == 1 and not _is_later_round(s.id):
                part.steps.append(s)
            elif n > 1 and s.id.startswith(prefix):
                part.steps.append(s.model_copy(update={"id": s.id.removeprefix(prefix)}))
        out.append(part)
    return out


def _is_later_round(step_id: str) -> bool:
    head, dot, _ = step_id.partition(".")
    return bool(dot) and head[:1] == "r" and head[1:].isdigit()


def _result(run_id: str, step: StepRecord) -> StepResult:
    """A finished step's record as the result the replay hands back."""
    outcome = {name: getattr(step, name) for name in StepOutcome.model_fields}
    return StepResult(
        **outcome,
        run_id=run_id,
        step_id=step.id,
        status=StepStatus.DONE,
        started_at=step.started_at or 0.0,
        finished_at=step.finished_at or 0.0,
    )


def _route(data: dict[str, Any]) -> Route:
    return Route(
        data.get("target", "llm"),
        float(data.get("score", 1.0)),
        float(data.get("threshold", 1.0)),
        str(data.get("reason", "")),
        data.get("signals") or {},
    )
