"""Goal runs: route, plan (streaming), run, join, and replan, under one budget.

```
goal ─► router ─┬─► slm: one SLM step that fits the goal (agents.direct) ─► record
                └─► llm: planner.stream ─► flow.add(step) as each arrives
                         ─► steps run while the plan is still streaming
                         ─► joiner: finish (answer) | replan (what is missing) ─┐
                              ▲───────────────────── bounded replans ◄──────────┘
```

Streaming dispatch is natural here because `Flow.add` starts a step as soon as its
own dependencies are done: the workflow body adds each step the moment the streamed
plan yields it. A streamed plan that turns out invalid at the end is repaired once
by the planner (non-streaming, with the problems) and run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from taskloom.agents.budget import Budget
from taskloom.agents.direct import DirectPlanner
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.agents.joiner import Joiner
from taskloom.agents.planner import Planner, PlanStream, check_goal
from taskloom.agents.router import Route, Router
from taskloom.chat import ChatModel
from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.errors import BudgetExceededError, PlannerRequiredError, PlanValidationError
from taskloom.logs import get_logger
from taskloom.plan import Plan
from taskloom.step import ErrorInfo, StepResult
from taskloom.tools import ToolRegistry
from taskloom.workflows.definition import Workflow
from taskloom.workflows.flow import Flow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.runner import OnEvent, new_run_id, run
from taskloom.workflows.store import RunStore

log = get_logger(__name__)

NEEDS_LLM = (
    "this goal needs an LLM planner ({reason}) and no endpoint is configured: set "
    "OPENAI_BASE_URL to any OpenAI-compatible server (e.g. run `python -m llama_cpp.server "
    "--model MODEL.gguf` and set OPENAI_BASE_URL=http://localhost:8000/v1), or pass "
    "--local-planner to let the small local model plan (its plans are weak)"
)


@dataclass
class GoalRun:
    """What a goal run needs besides the dispatcher.

    Args:
        planner: turns the goal into plans; None: there is none (no endpoint, and the
            local model may not plan), so a goal routed to the LLM can't run.
        joiner: finishes or replans after each round; None takes the plan's output.
        router: sends simple requests to the SLM alone; None always plans.
        direct: the one-step plans of goals the router keeps on the SLM; None: one
            on the router's SLM.
        llm: the large model that escalated and `kind: llm` steps run on; None: none.
        budget: shared by all of the above.
        is_streaming: dispatch steps while the plan streams in.
        tools: the Python tools plans may call; by default the planner's.
    """

    planner: Planner | None
    joiner: Joiner | None = None
    router: Router | None = None
    direct: DirectPlanner | None = None
    llm: ChatModel | None = None
    budget: Budget = field(default_factory=Budget)
    is_streaming: bool = True
    tools: ToolRegistry | None = None

    def __post_init__(self) -> None:
        if self.tools is None:
            self.tools = self.planner.tools if self.planner is not None else ToolRegistry()
        if self.direct is None:
            slm = self.router.slm if self.router is not None else None
            self.direct = DirectPlanner(slm, settings=_settings_of(self), budget=self.budget)


def _settings_of(agents: GoalRun) -> Settings | None:
    for part in (agents.planner, agents.router):
        if part is not None:
            return part.settings
    return None


def route_goal(goal: str, inputs: dict[str, Any], agents: GoalRun) -> Route:
    """Where the goal goes: the router's decision, or the planner when there is no router.

    Raises:
        InputError: the goal is empty.
        PlannerRequiredError: the goal goes to the LLM and there is no planner.
    """
    check_goal(goal)
    if agents.router is not None:
        route = agents.router.route(goal, inputs)
        said = f"router: {route.reason}"
    else:
        route = Route.off("routing is off (--no-route): every goal is planned")
        said = route.reason
    if route.target == "llm" and agents.planner is None:
        raise PlannerRequiredError(NEEDS_LLM.format(reason=said))
    return route


def run_goal(
    goal: str,
    inputs: dict[str, Any],
    agents: GoalRun,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: RunStore | None = None,
    run_id: str | None = None,
    on_event: OnEvent | None = None,
    route: Route | None = None,
) -> RunRecord:
    """Route, plan, run and join a goal; return one record for every round.

    Args:
        route: the goal's route, when `route_goal` already decided it.

    Raises:
        InputError: the goal is empty.
        PlannerRequiredError: the goal needs the LLM planner, and there is none.
        PlanValidationError: the first plan stayed invalid after its repairs.
        EndpointUnavailableError: the LLM endpoint kept failing.
    """
    route = route if route is not None else route_goal(goal, inputs, agents)
    escalating = EscalatingDispatcher(
        dispatcher, llm=agents.llm, budget=agents.budget, settings=settings
    )
    ctx = Rounds(
        goal,
        inputs,
        agents,
        escalating,
        settings=settings,
        checkpointer=checkpointer,
        on_event=on_event,
        run_id=run_id or new_run_id(),
        store=store,
        route=route,
    )
    ctx.save()  # the run exists from here on: a crash leaves a record to resume
    ctx.start()
    return ctx.finish()


class Rounds:
    """The rounds of one goal run and the records they produced.

    The run's record is saved as it goes: when it starts, after each finished step,
    each round and each join, so a crashed goal run can be resumed (`agents.resume`).
    A round that is running is kept in `rounds` with status `running` meanwhile.
    """

    def __init__(
        self,
        goal: str,
        inputs: dict[str, Any],
        agents: GoalRun,
        escalating: EscalatingDispatcher,
        *,
        settings: Settings,
        checkpointer: BaseCheckpointSaver[Any] | None,
        on_event: OnEvent | None,
        run_id: str,
        store: RunStore | None,
        route: Route,
        started: float | None = None,
    ) -> None:
        self.goal, self.inputs, self.agents = goal, inputs, agents
        self.escalating, self.settings = escalating, settings
        self.dispatcher: Dispatcher = escalating
        self.checkpointer, self.on_event, self.run_id = checkpointer, on_event, run_id
        self.store, self.route = store, route
        self.started = started if started is not None else time.time()
        self.rounds: list[dict[str, Any]] = []
        self.records: list[RunRecord] = []
        self.live: dict[str, Any] | None = None  # the round running now, as its entry
        self.output: Any = None
        self.stopped: ErrorInfo | None = None
        self.tools = agents.tools if agents.tools is not None else ToolRegistry()
        self.planner_why = f"the router sent the goal to the LLM ({route.reason})"

    def start(self) -> None:
        """Run the goal from its route: one direct step, or planning rounds."""
        if self.route.target == "slm":
            self.run_direct()
        else:
            self.plan_rounds()

    def run_direct(self) -> RunRecord:
        """The one-step plan of a goal the router kept on the SLM, as the only round."""
        direct = self.agents.direct
        assert direct is not None  # set in GoalRun.__post_init__
        made = direct.plan(self.goal, self.inputs)
        why = f"the router kept the goal on the SLM ({self.route.reason}); one step: {made.why}"
        by = _planned_by("direct", direct.slm, why)
        return self.run_plan(made.plan, source="router", planner=by)

    def finish(self) -> RunRecord:
        """The final record, saved."""
        record = self.record()
        if self.store is not None:
            self.store.save(record)
        log.info(
            "goal_finished", run_id=self.run_id, status=record.status.value, rounds=len(self.rounds)
        )
        return record

    def save(self, live: RunRecord | None = None) -> None:
        """Save the record so far (status running), with the running round's steps."""
        if self.store is None:
            return
        record = self.record(live=live)
        record.status, record.error, record.finished_at = RunStatus.RUNNING, None, None
        self.store.save(record)

    def _begin(self, source: str, plan: Plan | None) -> None:
        self.live = {
            "round": len(self.records) + 1,
            "run_id": self._round_id(),
            "source": source,
            "plan": plan.model_dump(mode="json", exclude_none=True) if plan else None,
            "status": RunStatus.RUNNING.value,
        }
        self.save()

    def _observe(self, event: dict[str, Any], live: RunRecord) -> None:
        if self.on_event is not None:
            self.on_event(event, live)
        if event.get("event") == "step_finished":
            self.save(live)

    @property
    def planner(self) -> Planner:
        """The planner of the planning rounds (`route_goal` made sure there is one)."""
        assert self.agents.planner is not None
        return self.agents.planner

    def _round_id(self) -> str:
        n = len(self.records) + 1
        return self.run_id if n == 1 else f"{self.run_id}-{n}"

    def run_plan(
        self,
        plan: Plan,
        *,
        source: str,
        info: dict[str, Any] | None = None,
        planner: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Run a whole plan as one round."""
        started = time.perf_counter()
        self._begin(source, plan)
        record = run(
            Workflow.from_plan(plan, tools=self.tools),
            self.inputs,
            dispatcher=self.dispatcher,
            settings=self.settings,
            checkpointer=self.checkpointer,
            run_id=self._round_id(),
            target=f"goal ({source})",
            on_event=self._observe,
        )
        wall_ms = (time.perf_counter() - started) * 1000
        self._keep(record, plan, source, wall_ms, info or {}, planner)
        return record

    def run_streamed(self, learned: str | None) -> RunRecord:
        """Plan with a streamed reply, adding each step to the running flow as it arrives."""
        started = time.perf_counter()
        stream = self.planner.stream(self.goal, self.inputs, learned=learned)
        timing: dict[str, float] = {}
        holder: dict[str, Plan] = {}
        partial = RunRecord(run_id=self._round_id(), target="goal (streamed plan)")
        self._begin("planner (streamed)", None)  # its plan is known once the stream ends

        def on_event(event: dict[str, Any], live: RunRecord) -> None:
            kind = event.get("event")
            if kind == "step_added":  # in the order added, whatever order steps finish in
                partial.step(event["step_id"], event.get("kind", ""))
            elif kind == "step_finished":  # kept in case the plan proves invalid
                step = partial.step(event["step_id"], event.get("kind", ""))
                step.merge(StepResult.model_validate(event["result"]))
            self._observe(event, live)

        def streamed_plan(flow: Flow, **_: Any) -> Any:
            for step in stream:
                timing.setdefault("first_step_ms", (time.perf_counter() - started) * 1000)
                flow.add(step)
            plan = stream.finish()
            timing["plan_ms"] = (time.perf_counter() - started) * 1000
            holder["plan"] = plan
            if self.live is not None:
                self.live["plan"] = plan.model_dump(mode="json", exclude_none=True)
            for step in plan.order():
                if step.id not in flow.steps:
                    flow.add(step)
            return flow.resolve(plan.output, is_wire=True)

        try:
            record = run(
                Workflow(streamed_plan, name="goal", tools=self.tools),
                self.inputs,
                dispatcher=self.dispatcher,
                settings=self.settings,
                checkpointer=self.checkpointer,
                run_id=self._round_id(),
                target="goal (streamed plan)",
                on_event=on_event,
            )
        except PlanValidationError as e:
            partial.status, partial.error = RunStatus.FAILED, ErrorInfo.of(e)
            partial.tally()
            wall_ms = (time.perf_counter() - started) * 1000
            info = {**timing, "streamed_plan_problems": e.problems}
            self._keep(partial, _best_effort_plan(stream), "planner (streamed)", wall_ms, info)
            return self._repair(stream, e, learned)
        plan = holder.get("plan")
        if plan is None:  # a step failed before the plan finished streaming
            plan = _best_effort_plan(stream)
        record.plan = plan.model_dump(mode="json", exclude_none=True)
        self._keep(
            record, plan, "planner (streamed)", (time.perf_counter() - started) * 1000, timing
        )
        return record

    def _repair(self, stream: PlanStream, e: PlanValidationError, learned: str | None) -> RunRecord:
        log.info("streamed_plan_invalid", problems=len(e.problems))
        plan = self.planner.plan(
            self.goal, self.inputs, learned=learned, repair_of=(stream.text, e.problems)
        )
        return self.run_plan(plan, source="planner (repaired)")

    def plan_once(self, learned: str | None) -> RunRecord:
        """One planning round, streamed or not."""
        if self.agents.is_streaming:
            return self.run_streamed(learned)
        planned_at = time.perf_counter()
        plan = self.planner.plan(self.goal, self.inputs, learned=learned)
        info = {"plan_ms": (time.perf_counter() - planned_at) * 1000}
        return self.run_plan(plan, source="planner", info=info)

    def plan_rounds(
        self, *, start: int = 0, first: RunRecord | None = None, learned: str | None = None
    ) -> None:
        """Plan, run and join until the joiner finishes, the replans or the budget run out.

        Args:
            start: planning rounds already done (a resumed run goes on from there).
            first: a round already run that is still to be joined (a resumed round).
            learned: what the next plan is told (a resumed run's last join).
        """
        for n in range(start, self.settings.max_replans + 1):
            try:
                record = first if first is not None else self.plan_once(learned)
                first = None
            except BudgetExceededError as e:
                self.live = None
                self.stopped = ErrorInfo.of(e)
                self.rounds.append(
                    {"round": n + 1, "stopped": {"budget": e.budget, "where": e.where}}
                )
                return
            except PlanValidationError as e:
                self.live = None
                failed: dict[str, Any] = {"round": n + 1, "error": ErrorInfo.of(e).model_dump()}
                if self.agents.planner is not None:
                    failed |= {"planner": self._planner_record(), "rejected": self.planner.rejected}
                self.rounds.append(failed)
                if n == 0:  # no plan ran: the run fails with the planner's error
                    self.stopped = ErrorInfo.of(e)
                    e.record = self.finish()
                    raise
                return
            joiner = self.agents.joiner
            if joiner is None:
                return
            can_replan = n < self.settings.max_replans
            steps = [s.model_dump(mode="json") for s in record.steps]
            try:
                decision = joiner.join(
                    self.goal, plan_output=record.output, steps=steps, can_replan=can_replan
                )
            except BudgetExceededError as e:
                self.rounds[-1]["join"] = {"stopped": {"budget": e.budget, "where": e.where}}
                return
            self.rounds[-1]["join"] = decision.as_record()
            self.save()
            if decision.action == "finish":
                if record.status == RunStatus.DONE:
                    record.output = decision.answer
                return
            learned = learned_from(decision.reason, record)

    def _planner_record(self) -> dict[str, Any]:
        """Which planner planned this round (the LLM's or the local model's), and why."""
        planner = self.planner
        if not planner.is_local:
            return _planned_by("llm", planner.model, self.planner_why)
        why = f"{self.planner_why}; no endpoint, and --local-planner lets the local model plan"
        if planner.last_fallback:
            why += f"; its plans stayed invalid, so a one-step plan: {planner.last_fallback}"
        return _planned_by("local", planner.model, why)

    def _keep(
        self,
        record: RunRecord,
        plan: Plan,
        source: str,
        wall_ms: float,
        info: dict[str, Any],
        planner: dict[str, Any] | None = None,
    ) -> None:
        record.plan = plan.model_dump(mode="json", exclude_none=True)
        self.records.append(record)
        self.live = None
        is_planned = source.startswith("planner")
        self.rounds.append(
            {
                "round": len(self.records),
                "run_id": record.run_id,
                "source": source,
                "planner": self._planner_record() if is_planned else planner,
                "plan": record.plan,
                "planner_attempts": self.planner.attempts if is_planned else 0,
                "fallback": self.planner.last_fallback if is_planned else None,
                "status": record.status.value,
                "output": record.output,
                "error": record.error.model_dump() if record.error else None,
                "steps": len(record.steps),
                "wall_ms": round(wall_ms, 2),
                **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in info.items()},
            }
        )

    def record(self, live: RunRecord | None = None) -> RunRecord:
        """One record for the whole goal run: the last round's result, every round's steps
        (and the steps of the `live` round that is still running)."""
        last = self.records[-1] if self.records else None
        record = RunRecord(
            run_id=self.run_id,
            target="goal",
            goal=self.goal,
            inputs=self.inputs,
            created_at=self.started,
            plan=last.plan if last else None,
        )
        records = [*self.records, *([live] if live is not None else [])]
        for n, r in enumerate(records, start=1):
            for s in r.steps:
                record.steps.append(s if n == 1 else s.model_copy(update={"id": f"r{n}.{s.id}"}))
        if last is not None:
            record.status, record.output, record.error = last.status, last.output, last.error
        else:
            record.status = RunStatus.FAILED
            record.error = self.stopped or ErrorInfo(type="RunFailedError", message="no plan ran")
        record.route = self.route.as_record()
        record.planner = self.rounds[-1].get("planner") if self.rounds else None
        record.rounds = [*self.rounds, *([self.live] if self.live is not None else [])]
        record.escalations = list(self.escalating.escalations)
        record.budget = self.agents.budget.summary()
        record.finished_at = time.time()
        record.tally()
        return record


def _planned_by(name: str, model: ChatModel | None, why: str) -> dict[str, Any]:
    """The record of who planned: `direct`, `local` or `llm`, the model, and why."""
    return {"name": name, "model": model.name if model is not None else None, "why": why}


def learned_from(reason: str, record: RunRecord) -> str:
    """What the next plan is told: the joiner's reason and the last round's results."""
    lines = [f"The joiner said: {reason}"]
    for s in record.steps:
        value = s.value if s.value is not None else s.error
        lines.append(f"- step {s.id} ({s.kind}, {s.status.value}): {str(value)[:300]}")
    return "\n".join(lines)


def _best_effort_plan(stream: PlanStream) -> Plan:
    """The steps that were streamed, as a plan (for the record of a round that failed)."""
    return Plan(goal=stream.goal, steps=list(stream.yielded.values()), output=None)
