"""Planning from a goal: `taskloom plan --goal`, `taskloom route --goal`, and the goal
flags `run --goal` shares."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from taskloom.cli.app import cli
from taskloom.cli.common import parse_inputs, settings_from
from taskloom.errors import InputError

if TYPE_CHECKING:
    from taskloom.api import RunRecord


def goal_options(fn: Any) -> Any:
    """The options of planning from a goal (`run --goal`, `plan`)."""
    options = [
        click.option("--goal", metavar="TEXT", help="Route this goal, plan it, then run it."),
        click.option(
            "--planner-model", metavar="NAME", help="The LLM model: plans, escalations, llm steps."
        ),
        click.option("--max-steps", type=int, metavar="N", help="Budget: steps in the run."),
        click.option("--max-cost-usd", type=float, metavar="USD", help="Budget: dollars."),
        click.option("--max-llm-calls", type=int, metavar="N", help="Budget: LLM calls."),
        click.option(
            "--local-planner",
            is_flag=True,
            help="Without OPENAI_BASE_URL, let the small local model plan goals that need "
            "an LLM planner (its plans are weak).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def warn_local_planner(local_planner: bool) -> None:
    """Warn on stderr when the local model may plan: its plans are weak."""
    if local_planner and not settings_from().openai_base_url:
        click.echo(
            "taskloom: warning: --local-planner: goals that need an LLM planner are planned "
            "by the small local model, and its plans are weak; set OPENAI_BASE_URL to an "
            "OpenAI-compatible server for good ones",
            err=True,
        )


def emit_goal_summary(record: RunRecord) -> None:
    """One stderr line for a goal run: route, rounds, escalations, spend, budget stop."""
    from taskloom.views.status import goal_summary

    g = goal_summary(record)
    stopped = g["stopped"]
    line = (
        f"goal: route {g['route']}, planned by {g['planner']}, {g['rounds']} round(s), "
        f"{g['escalations']} escalation(s), "
        f"{g['llm_calls']} LLM call(s), ${g['cost_usd']:.6f} in all"
    )
    if stopped:
        line += f"; stopped by budget {stopped['budget']} at {stopped['where']}"
    click.echo(line, err=True)


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
    goal: str | None,
    max_steps: int | None,
    as_json: bool,
    mermaid: bool,
    local_planner: bool,
    **flags: Any,
) -> None:
    """Plan --goal and print the validated plan; nothing runs."""
    from taskloom.api import local
    from taskloom.views.mermaid import plan_mermaid

    if goal is None:
        raise InputError("plan needs a goal; pass --goal with what the run should achieve")
    if as_json and mermaid:
        raise click.UsageError("give --json or --mermaid, not both")
    warn_local_planner(local_planner)
    planned = local.plan_goal(
        goal,
        parse_inputs(input_text),
        tool_modules=tool_specs,
        max_steps=max_steps,
        is_local_planner=local_planner,
        **flags,
    )
    made = planned.plan
    if as_json:
        click.echo(made.to_json())
    elif mermaid:
        click.echo(plan_mermaid(made))
    else:
        for step in made.order():
            deps = ", ".join(step.dependencies())
            what = f"{step.kind} {step.tool}" if step.tool else step.kind
            click.echo(f"{step.id}: {what}" + (f" (after {deps})" if deps else ""))
        click.echo(f"output: {json.dumps(made.output, ensure_ascii=False)}")
    fallback = f"; fell back to one step: {planned.fallback}" if planned.fallback else ""
    click.echo(
        f"plan by {planned.planner_model} ({planned.planner} planner): {len(made.steps)} "
        f"steps, {planned.attempts} attempt(s), ${planned.cost_usd:.6f}{fallback}",
        err=True,
    )
    if planned.why:
        click.echo(f"why: {planned.why}", err=True)


@cli.command()
@click.option("--goal", metavar="TEXT", help="The goal to route.")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The goal's inputs.")
@click.option("--model", metavar="PATH", help="GGUF model for the router's signal.")
@click.option(
    "--route-threshold",
    type=click.FloatRange(0, 1),
    metavar="0..1",
    help="Complexity at which the LLM plans; higher sends more to the SLM (default 0.5).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def route(goal: str | None, input_text: str | None, as_json: bool, **flags: Any) -> None:
    """Print where --goal would go (slm or llm), its score and why; nothing runs.

    Needs only the small model: no OPENAI_BASE_URL.
    """
    from taskloom.api import local

    if goal is None:
        raise InputError("route needs a goal; pass --goal with what the run should achieve")
    decision = local.route(goal, parse_inputs(input_text), **flags)
    if as_json:
        click.echo(json.dumps(decision.as_record(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"{decision.target} (score {decision.score:.2f}): {decision.reason}")
