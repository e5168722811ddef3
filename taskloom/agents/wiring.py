"""The agents a goal run gets from its settings: endpoint or not, routed or not.

With an endpoint the LLM plans and joins, and the router may keep simple goals on the
SLM. Without one there is no LLM planner: the router still decides, simple goals get
the direct one-step plan on the SLM, and complex ones stop with PlannerRequiredError
(`goal.route_goal`) unless `--local-planner` lets the local SLM plan them.
"""

from __future__ import annotations

from collections.abc import Callable

from taskloom.agents.budget import Budget
from taskloom.agents.direct import DirectPlanner
from taskloom.agents.goal import GoalRun
from taskloom.agents.joiner import Joiner
from taskloom.agents.planner import Planner
from taskloom.agents.router import Router
from taskloom.chat import ChatModel
from taskloom.chat.openai import OpenAIChatModel
from taskloom.config import Settings
from taskloom.logs import get_logger
from taskloom.tools import ToolRegistry

log = get_logger(__name__)

LOCAL_PLAN_MAX_TOKENS = 700
"""A plan reply's token cap when the local SLM plans: at ~8 tokens/s constrained, about
a minute and a half per attempt on CPU, enough for the compact schema's few steps."""


def goal_agents(
    settings: Settings,
    *,
    tools: ToolRegistry,
    slm: Callable[[], ChatModel],
    is_routed: bool = True,
    is_streaming: bool = True,
    max_steps: int | None = None,
    is_local_planner: bool = False,
) -> GoalRun:
    """The planner, joiner, router and budget that `settings` configure.

    With an endpoint (`openai_base_url`) the LLM plans, joins, and runs escalated and
    `kind: llm` steps, and the router (when `is_routed`) may send simple requests to
    the SLM. Without one the router still decides: a simple goal gets the direct
    one-step plan on the SLM, and a complex one has no planner (`route_goal` raises
    PlannerRequiredError) unless `is_local_planner` lets the local SLM plan it.

    Args:
        settings: endpoint, model, prices, thresholds and budgets.
        tools: the Python tools plans may call.
        slm: the small model, created on first use (the router, direct plans and a
            local planner).
        is_routed: let the router send simple requests to the SLM alone.
        is_streaming: dispatch steps while the plan streams in.
        max_steps: the step budget for the whole run.
        is_local_planner: without an endpoint, let the local SLM plan complex goals.
    """
    budget = Budget(
        max_cost_usd=settings.max_cost_usd,
        max_llm_calls=settings.max_llm_calls,
        max_steps=max_steps,
    )
    llm = OpenAIChatModel.from_settings(settings)
    if llm is None:
        return _local_agents(
            settings,
            tools=tools,
            model=slm() if is_routed or is_local_planner else None,
            budget=budget,
            is_routed=is_routed,
            is_local_planner=is_local_planner,
        )
    planner = Planner(llm, tools=tools, settings=settings, budget=budget)
    router = (
        Router(slm(), threshold=settings.route_threshold, settings=settings, budget=budget)
        if is_routed
        else None
    )
    return GoalRun(
        planner=planner,
        joiner=Joiner(llm, settings=settings, budget=budget),
        router=router,
        llm=llm,
        budget=budget,
        is_streaming=is_streaming,
    )


def _local_agents(
    settings: Settings,
    *,
    tools: ToolRegistry,
    model: ChatModel | None,
    budget: Budget,
    is_routed: bool,
    is_local_planner: bool,
) -> GoalRun:
    """No endpoint: the router and direct plans on the SLM; a local planner if asked for."""
    router = (
        Router(model, threshold=settings.route_threshold, settings=settings, budget=budget)
        if is_routed
        else None
    )
    direct = DirectPlanner(model, settings=settings, budget=budget)
    planner = None
    if is_local_planner and model is not None:
        log.info("planning_locally", reason="no OPENAI_BASE_URL; --local-planner")
        planner = Planner(
            model,
            tools=tools,
            settings=settings,
            budget=budget,
            is_local=True,
            allow_llm_steps=False,
            max_tokens=LOCAL_PLAN_MAX_TOKENS,
            fallback=lambda goal, inputs: direct.plan(goal, inputs).plan,
        )
    # Not streamed: a local plan must pass the whole-plan checks before any step runs.
    return GoalRun(
        planner=planner,
        router=router,
        direct=direct,
        budget=budget,
        is_streaming=False,
        tools=tools,
    )
