"""Planning from a goal: `taskloom plan --goal`, and what `run --goal` needs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from taskloom.cli.app import cli
from taskloom.cli.common import make_dispatcher, parse_inputs, settings_from
from taskloom.config import Settings
from taskloom.errors import InputError
from taskloom.progress import Progress

if TYPE_CHECKING:
    from taskloom.chat import ChatModel
    from taskloom.workers.dispatch import Dispatcher
    from taskloom.workflows.record import RunRecord


def goal_options(fn: Any) -> Any:
    """The options of planning from a goal (`run --goal`, `plan`)."""
    options = [
        click.option("--goal", metavar="TEXT", help="Plan this goal with the LLM, then run it."),
        click.option("--planner-model", metavar="NAME", help="Model the planner asks for."),
        click.option("--max-steps", type=int, metavar="N", help="Budget: steps in the run."),
        click.option("--max-cost-usd", type=float, metavar="USD", help="Budget: dollars."),
        click.option("--max-llm-calls", type=int, metavar="N", help="Budget: LLM calls."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def goal_settings(settings: Settings, **flags: Any) -> Settings:
    """Settings with the goal flags that were given applied."""
    names = {
        "planner_model": "planner_model",
        "max_cost_usd": "max_cost_usd",
        "max_llm_calls": "max_llm_calls",
        "route_threshold": "route_threshold",
        "escalate_below": "escalate_below",
        "max_replans": "max_replans",
    }
    updates = {names[k]: v for k, v in flags.items() if k in names and v is not None}
    return settings.model_validate({**settings.model_dump(), **updates})


def slm_factory(dispatcher: Dispatcher, settings: Settings) -> Callable[[], ChatModel]:
    """The small model for the router and a local planner: the inline dispatcher's own."""
    from taskloom.workers.inline import InlineDispatcher

    if isinstance(dispatcher, InlineDispatcher):
        return dispatcher.model

    def load() -> ChatModel:
        from taskloom.workers.handlers import load_model  # "scripted" or a GGUF, as workers do

        return load_model(settings)

    return load


def emit_goal_summary(record: RunRecord) -> None:
    """One stderr line for a goal run: route, rounds, escalations, spend, budget stop."""
    from taskloom.workflows.goal import summarize

    g = summarize(record)
    stopped = g["stopped"]
    line = (
        f"goal: route {g['route']}, {g['rounds']} round(s), {g['escalations']} escalation(s), "
        f"{g['llm_calls']} LLM call(s), ${g['cost_usd']:.6f} in all"
    )
    if stopped:
        line += f"; stopped by budget {stopped['budget']} at {stopped['where']}"
    click.echo(line, err=True)


def run_goal_command(
    goal: str,
    inputs: dict[str, Any],
    settings: Settings,
    *,
    tool_specs: tuple[str, ...],
    is_inline: bool,
    workers: int,
    run_id: str | None,
    is_routed: bool,
    is_streaming: bool,
    max_steps: int | None,
    as_json: bool,
) -> RunRecord:
    """`run --goal`: route, plan (streaming), run, join; one record for every round."""
    from taskloom.workflows.definition import Workflow
    from taskloom.workflows.goal import goal_agents, run_goal
    from taskloom.workflows.runner import sqlite_checkpointer
    from taskloom.workflows.store import SqliteRunStore
    from taskloom.workflows.target import load_tools

    if not goal.strip():
        raise InputError("the goal is empty; pass --goal with what the run should achieve")
    tools = load_tools(list(tool_specs))
    holder = Workflow(lambda flow: None, name="goal", tools=tools)
    store = SqliteRunStore(settings.state_path)
    with (
        make_dispatcher(
            settings, holder, is_inline=is_inline, workers=workers, tool_specs=tool_specs
        ) as dispatcher,
        sqlite_checkpointer(settings.state_path) as checkpointer,
        Progress(total=None, is_quiet=as_json) as progress,
    ):
        agents = goal_agents(
            settings,
            tools=tools,
            slm=slm_factory(dispatcher, settings),
            is_routed=is_routed,
            is_streaming=is_streaming,
            max_steps=max_steps,
        )
        return run_goal(
            goal,
            inputs,
            agents,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            run_id=run_id,
            on_event=progress.update,
        )


@cli.command()
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--model", metavar="PATH", help="GGUF model that plans without an endpoint.")
@goal_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--mermaid", is_flag=True, help="Print the plan as a Mermaid flowchart.")
def plan(
    input_text: str | None,
    tool_specs: tuple[str, ...],
    model: str | None,
    goal: str | None,
    max_steps: int | None,
    as_json: bool,
    mermaid: bool,
    **flags: Any,
) -> None:
    """Plan --goal and print the validated plan; nothing runs."""
    from taskloom.views.mermaid import plan_mermaid as to_mermaid
    from taskloom.workflows.goal import goal_agents
    from taskloom.workflows.target import load_tools

    if goal is None or not goal.strip():
        raise InputError("the goal is empty; pass --goal with what the run should achieve")
    if as_json and mermaid:
        raise click.UsageError("give --json or --mermaid, not both")
    settings = goal_settings(settings_from(model=model), **flags)
    inputs = parse_inputs(input_text)
    tools = load_tools(list(tool_specs))

    def local_model() -> ChatModel:
        from taskloom.workers.host import default_host

        return default_host(settings)

    agents = goal_agents(
        settings, tools=tools, slm=local_model, is_routed=False, max_steps=max_steps
    )
    made = agents.planner.plan(goal, inputs)
    if as_json:
        click.echo(made.to_json())
    elif mermaid:
        click.echo(to_mermaid(made))
    else:
        for step in made.order():
            deps = ", ".join(step.dependencies())
            what = f"{step.kind} {step.tool}" if step.tool else step.kind
            click.echo(f"{step.id}: {what}" + (f" (after {deps})" if deps else ""))
        click.echo(f"output: {json.dumps(made.output, ensure_ascii=False)}")
    planner = agents.planner
    fallback = f"; fell back to one step: {planner.last_fallback}" if planner.last_fallback else ""
    click.echo(
        f"plan by {planner.model.name}: {len(made.steps)} steps, {planner.attempts} attempt(s), "
        f"${agents.budget.cost_usd:.6f}{fallback}",
        err=True,
    )
