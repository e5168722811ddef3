"""Running here: `run`, `run_many`, `resume`, `run_goal`, `plan_goal`, `route`, `validate`.

With no Redis configured a run takes the embedded default, like `ray.init()`: a local
Redis-compatible server and local worker processes on the default model, through the
same dispatcher as a cluster. `run` is a `Cluster` (`api.cluster`) used once; keep one
up to run many targets on one start-up. Records and LangGraph checkpoints go to
`Settings.state_path`, so `resume` continues a crashed or failed run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.agents.goal import route_goal
from taskloom.agents.goal import run_goal as run_goal_rounds
from taskloom.agents.planner import check_goal, served_name
from taskloom.agents.resume import resume_goal as resume_goal_rounds
from taskloom.agents.router import Route, Router
from taskloom.agents.wiring import goal_agents
from taskloom.api.cluster import Cluster, Watcher, observe, run_many
from taskloom.api.targets import Target, ToolsArg, resolve_target
from taskloom.chat import ChatModel, load_model
from taskloom.config import Settings, settings_for
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.connection import connect
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.plan import Plan
from taskloom.workflows.checkpointer import open_checkpointer
from taskloom.workflows.record import RunRecord
from taskloom.workflows.review import reviewing
from taskloom.workflows.runner import OnEvent, new_run_id
from taskloom.workflows.runner import resume as resume_workflow
from taskloom.workflows.store import RunStore, SqliteRunStore
from taskloom.workflows.target import load_tools, read_inputs_file, read_json, read_plan, rebuild

__all__ = [
    "Cluster",
    "PlannedGoal",
    "Watcher",
    "plan_goal",
    "read_inputs_file",
    "read_json",
    "resolve_target",
    "resume",
    "run",
    "run_goal",
    "run_many",
    "settings_for",
    "validate",
]


def run(
    target: Target,
    inputs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    tools: ToolsArg = (),
    tool_modules: Iterable[str] = (),
    workers: int = 1,
    is_inline: bool = False,
    run_id: str | None = None,
    max_steps: int | None = None,
    dispatcher: Dispatcher | None = None,
    on_event: OnEvent | None = None,
    watcher: Watcher | None = None,
    cancelled: threading.Event | None = None,
    **options: Any,
) -> RunRecord:
    """Run a workflow or plan to the end and return its record.

    The run's budgets (`max_cost_usd=`, `max_llm_calls=`, `max_steps`) bound its SLM
    steps, escalations and `kind: llm` steps; with an endpoint configured
    (`openai_base_url`) low-confidence SLM steps escalate to the LLM, as in goal runs.
    It is a `Cluster` used once: to run many, keep one up (`Cluster`, `run_many`).

    Args:
        target: a Workflow, a Plan, a plan file (`*.json`), or `file.py:name` /
            `module:name` naming a workflow.
        inputs: the run's inputs (a JSON object).
        settings: the base settings; by default the environment's (`TASKLOOM_*`).
        tools: Python tools the steps may call.
        tool_modules: modules (or `file.py`) whose tools are registered, here and on
            local workers (`--tools`).
        workers: local worker processes for the embedded default.
        is_inline: run steps in this process, without Redis.
        run_id: use this id instead of a fresh one.
        max_steps: the step budget: steps executed, escalations included.
        dispatcher: dispatch through this one instead of choosing from the settings.
        on_event: called with each step event and the record so far.
        watcher: the same, for displays that also show which worker runs each step.
        cancelled: set it to stop the run (queued steps are dropped).
        **options: any `Settings` field, e.g. `redis_url=`, `model=`, `max_attempts=`.

    Raises:
        UserError: a bad target, inputs, plan or option (exit code 2).
        InfrastructureError: Redis or the workers are unavailable (exit code 3).
    """
    with Cluster(
        settings=settings,
        tools=tools,
        tool_modules=tool_modules,
        workers=workers,
        is_inline=is_inline,
        dispatcher=dispatcher,
        **options,
    ) as cluster:
        return cluster.run(
            target,
            inputs,
            run_id=run_id,
            max_steps=max_steps,
            on_event=on_event,
            watcher=watcher,
            cancelled=cancelled,
        )


def resume(
    run_id: str,
    *,
    settings: Settings | None = None,
    tool_modules: Iterable[str] = (),
    watcher: Watcher | None = None,
    **options: Any,
) -> RunRecord:
    """Continue a crashed or failed local run (a goal run too); finished steps stay.

    Without Redis configured the steps run in this process.

    Raises:
        RunNotFoundError: no local run has this id.
    """
    settings = settings_for(settings, options)
    store = SqliteRunStore(settings.state_path)
    record = store.load(run_id)
    if record.target == "goal":
        return _resume_goal(record, settings, store, list(tool_modules), watcher)
    workflow = rebuild(record.plan, record.target, tools=load_tools(list(tool_modules)))
    with (
        connect(settings, is_inline=not settings.redis_url, tools=workflow.tools) as dispatcher,
        open_checkpointer(settings) as checkpointer,
    ):
        escalating = EscalatingDispatcher.for_target(dispatcher, settings, resumed=record)
        done = resume_workflow(
            record,
            workflow,
            dispatcher=reviewing(escalating, dispatcher, settings),
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            on_event=observe(None, watcher, dispatcher, run_id),
        )
        store.save(escalating.annotate(done))
        return done


def _resume_goal(
    record: RunRecord,
    settings: Settings,
    store: RunStore,
    modules: list[str],
    watcher: Watcher | None,
) -> RunRecord:
    """A goal run goes on from its record: the same agents, under the budget it kept."""
    tools = load_tools(modules)
    with (
        connect(settings, is_inline=not settings.redis_url, tools=tools) as dispatcher,
        open_checkpointer(settings) as checkpointer,
    ):
        agents = goal_agents(
            settings,
            tools=tools,
            slm=_slm(dispatcher, settings),
            is_local_planner=(record.planner or {}).get("name") == "local",
        )
        agents.budget.restore(record.budget)
        return resume_goal_rounds(
            record,
            agents,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            on_event=observe(None, watcher, dispatcher, record.run_id),
        )


def run_goal(
    goal: str,
    inputs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    tool_modules: Iterable[str] = (),
    workers: int = 1,
    is_inline: bool = False,
    is_routed: bool = True,
    is_streaming: bool = True,
    is_local_planner: bool = False,
    max_steps: int | None = None,
    run_id: str | None = None,
    watcher: Watcher | None = None,
    **options: Any,
) -> RunRecord:
    """Route a goal, plan it (streaming), run it and join; one record for every round.

    The LLM is the OpenAI-compatible endpoint of `openai_base_url`. Without one, a goal
    the router keeps on the SLM runs as one step that fits it, and a goal it sends to
    the LLM raises PlannerRequiredError (before any cluster starts) unless
    `is_local_planner` lets the local model plan it. Options are `Settings` fields
    (`max_cost_usd=`, `escalate_below=`, …).

    Raises:
        InputError: the goal is empty.
        PlannerRequiredError: the goal needs an LLM planner and no endpoint is set.
        PlanValidationError: the first plan stayed invalid after its repairs.
        EndpointUnavailableError: the LLM endpoint kept failing.
    """
    check_goal(goal)  # before starting a cluster or loading a model
    settings = settings_for(settings, options)
    run_id = run_id or new_run_id()
    modules = list(tool_modules)
    tools = load_tools(modules)
    with ExitStack() as stack:
        # Inline steps share this process's model, so the router does too; otherwise
        # the route is decided before a cluster starts, so a goal that can't run
        # stops at once.
        dispatcher: Dispatcher | None = None
        if is_inline:
            dispatcher = stack.enter_context(connect(settings, is_inline=True, tools=tools))
        agents = goal_agents(
            settings,
            tools=tools,
            slm=_slm(dispatcher, settings),
            is_routed=is_routed,
            is_streaming=is_streaming,
            max_steps=max_steps,
            is_local_planner=is_local_planner,
        )
        route = route_goal(goal, inputs or {}, agents)
        if dispatcher is None:
            dispatcher = stack.enter_context(
                connect(settings, workers=workers, tools=tools, tool_specs=modules)
            )
        checkpointer = stack.enter_context(open_checkpointer(settings))
        return run_goal_rounds(
            goal,
            inputs or {},
            agents,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=SqliteRunStore(settings.state_path),
            run_id=run_id,
            on_event=observe(None, watcher, dispatcher, run_id),
            route=route,
        )


@dataclass(frozen=True)
class PlannedGoal:
    """A plan made from a goal, and how it was made.

    `planner` is `direct` (the router kept the goal on the SLM: one step that fits
    it), `local` (the local model planned, `is_local_planner`) or `llm`; `why` says
    why, and `route` is the router's decision (None when the LLM plans unrouted).
    """

    plan: Plan
    planner_model: str
    attempts: int
    cost_usd: float
    fallback: str | None
    planner: str = "llm"
    why: str = ""
    route: dict[str, Any] | None = None


def plan_goal(
    goal: str,
    inputs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    tool_modules: Iterable[str] = (),
    max_steps: int | None = None,
    is_local_planner: bool = False,
    **options: Any,
) -> PlannedGoal:
    """Plan a goal and return the validated plan; nothing runs.

    With an endpoint the LLM plans. Without one the router decides, as for `run_goal`:
    the direct one-step plan for a simple goal; for a complex one, PlannerRequiredError
    unless `is_local_planner`.

    Raises:
        InputError: the goal is empty.
        PlannerRequiredError: the goal needs an LLM planner and no endpoint is set.
        PlanValidationError: the plan stayed invalid after its repairs.
    """
    check_goal(goal)  # before loading a model
    settings = settings_for(settings, options)
    inputs = inputs or {}
    agents = goal_agents(
        settings,
        tools=load_tools(list(tool_modules)),
        slm=partial(load_model, settings),
        is_routed=not settings.openai_base_url,
        max_steps=max_steps,
        is_local_planner=is_local_planner,
    )
    route = route_goal(goal, inputs, agents)
    routed = route.as_record() if agents.router is not None else None
    if route.target == "slm" and agents.direct is not None:
        direct = agents.direct.plan(goal, inputs)
        model = agents.direct.slm.name if agents.direct.slm is not None else "none"
        why = f"the router kept the goal on the SLM ({route.reason}); one step: {direct.why}"
        return PlannedGoal(
            direct.plan, model, 0, agents.budget.cost_usd, None, "direct", why, routed
        )
    planner = agents.planner
    assert planner is not None  # route_goal made sure
    made = planner.plan(goal, inputs)
    why = f"the router sent the goal to the LLM ({route.reason})" if routed else route.reason
    if planner.is_local:
        why += "; no endpoint, and --local-planner lets the local model plan"
        if planner.last_fallback:
            why += "; its plans stayed invalid, so the direct one-step plan"
    return PlannedGoal(
        plan=made,
        planner_model=served_name(planner.model),
        attempts=planner.attempts,
        cost_usd=agents.budget.cost_usd,
        fallback=planner.last_fallback,
        planner="local" if planner.is_local else "llm",
        why=why,
        route=routed,
    )


def route(
    goal: str,
    inputs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    **options: Any,
) -> Route:
    """The router's decision for a goal (target `slm` or `llm`, score, reason); nothing runs.

    Needs only the SLM (the router's `classify` runs on it), never an LLM endpoint.

    Raises:
        InputError: the goal is empty.
        ModelFileError: the GGUF file is missing or corrupt.
    """
    check_goal(goal)  # before loading a model
    settings = settings_for(settings, options)
    router = Router(load_model(settings), threshold=settings.route_threshold, settings=settings)
    return router.route(goal, inputs or {})


def validate(
    path: str | Path, *, inputs: dict[str, Any] | None = None, settings: Settings | None = None
) -> Plan:
    """Load and validate a plan file (with `inputs`, its `$input` references too).

    Raises:
        TargetError: the file can't be read or is not JSON.
        PlanValidationError: every problem with the plan, at once.
    """
    settings = settings_for(settings, {})
    return read_plan(Path(path), max_steps=settings.max_steps, inputs=inputs)


def _slm(dispatcher: Dispatcher | None, settings: Settings) -> Callable[[], ChatModel]:
    """The small model for the router, direct plans and a local planner: the inline
    dispatcher's own, else one loaded here."""
    if isinstance(dispatcher, InlineDispatcher):
        return dispatcher.model
    return partial(load_model, settings)
