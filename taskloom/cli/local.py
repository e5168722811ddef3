"""Commands that run here: run, resume, validate, show, calibrate and learn."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from taskloom.cli.app import cli
from taskloom.cli.common import emit_record, exit_for, parse_inputs, settings_from, warn_unserved
from taskloom.cli.goal import emit_goal_summary, goal_options, warn_local_planner
from taskloom.errors import InputError, PlanValidationError, UserError
from taskloom.views.progress import Progress

GOAL_ONLY = {
    "route_threshold": "--route-threshold",
    "no_route": "--no-route",
    "max_replans": "--max-replans",
    "no_stream": "--no-stream",
    "local_planner": "--local-planner",
}
"""Flags that only mean something when a goal is planned: refused on a TARGET run."""


@cli.command()
@click.argument("target", required=False)
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option(
    "--inputs",
    "inputs_path",
    metavar="FILE.jsonl",
    help="One run a line (a JSON object of inputs), all on one start-up; prints a record a line.",
)
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to dispatch over (TASKLOOM_REDIS_URL).")
@click.option("--workers", default=1, show_default=True, help="Local workers to start.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Steps each local worker decodes at once (default 16; 1: one at a time).",
)
@click.option("--run-id", metavar="ID", help="Use this run id instead of a fresh one.")
@click.option(
    "--checkpointer",
    metavar="URL",
    help="LangGraph checkpoints: sqlite:///PATH or postgresql://… (TASKLOOM_CHECKPOINTER).",
)
@click.option("--inline", is_flag=True, help="Run steps in this process, without Redis.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
@click.option(
    "--review",
    type=click.Choice(["uncertain", "never"]),
    help="Ask a person about steps without `review` (TASKLOOM_REVIEW; default never).",
)
@goal_options
@click.option(
    "--route-threshold",
    type=click.FloatRange(0, 1),
    metavar="0..1",
    help="Complexity at which the LLM plans; higher sends more to the SLM (default 0.5).",
)
@click.option("--no-route", is_flag=True, help="Always plan with the LLM; never answer directly.")
@click.option(
    "--escalate-below",
    type=click.FloatRange(0, 1),
    metavar="0..1",
    help="Re-run SLM steps on the LLM below this confidence (default 0.5).",
)
@click.option(
    "--precision",
    "target_precision",
    type=click.FloatRange(0.5, 0.999),
    metavar="0.5..0.999",
    help="Precision accepted SLM answers must reach (TASKLOOM_TARGET_PRECISION; default 0.95).",
)
@click.option("--max-replans", type=int, metavar="N", help="Replans the joiner may ask for.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole plan before running it.")
@click.option(
    "--no-learned",
    "learned",
    flag_value=False,
    default=None,
    help="Run SLM steps as written, without what taskloom learn learned (docs/learning.md).",
)
def run(
    target: str | None,
    input_text: str | None,
    inputs_path: str | None,
    tool_specs: tuple[str, ...],
    workers: int,
    run_id: str | None,
    inline: bool,
    as_json: bool,
    goal: str | None,
    no_route: bool,
    no_stream: bool,
    max_steps: int | None,
    local_planner: bool,
    **flags: Any,
) -> None:
    """Run TARGET (a plan file, file.py:name or module:name), or plan and run --goal."""
    from taskloom.api import local

    if inputs_path is not None and (input_text is not None or goal is not None or run_id):
        raise click.UsageError(
            "--inputs runs TARGET once a line: drop --input, --goal and --run-id"
        )
    batch = local.read_inputs_file(inputs_path) if inputs_path is not None else None
    inputs = batch[0] if batch else parse_inputs(input_text)
    if goal is not None:
        if target:
            raise click.UsageError("give TARGET or --goal, not both")
        warn_local_planner(local_planner)
        with Progress(total=None, is_quiet=as_json) as progress, _record_on(as_json):
            record = local.run_goal(
                goal,
                inputs,
                tool_modules=tool_specs,
                workers=workers,
                is_inline=inline,
                is_routed=not no_route,
                is_streaming=not no_stream,
                is_local_planner=local_planner,
                max_steps=max_steps,
                run_id=run_id,
                watcher=progress,
                **flags,
            )
        emit_record(record, as_json=as_json)
        emit_goal_summary(record)
        exit_for(record)
    if not target:
        raise click.UsageError("give a TARGET (plan.json, file.py:name or module:name) or --goal")
    values = {**flags, "no_route": no_route, "no_stream": no_stream, "local_planner": local_planner}
    ignored = [flag for name, flag in GOAL_ONLY.items() if _is_given(values.get(name))]
    if ignored:
        them = "it" if len(ignored) == 1 else "them"
        raise click.UsageError(
            f"{', '.join(ignored)}: only for --goal runs; drop {them} to run {target}"
        )
    where: dict[str, Any] = {"redis_url": flags["redis_url"], "model": flags["model"]}
    budgets = {
        name: flags[name]
        for name in (
            "max_cost_usd",
            "max_llm_calls",
            "escalate_below",
            "target_precision",
            "learned",
        )
    }
    if not inline and settings_from(**where).redis_url:
        from taskloom.api import remote

        warn_unserved(remote.unserved_queues(target, inputs, tool_modules=tool_specs, **where))
    options: dict[str, Any] = {
        n: flags[n] for n in ("planner_model", "concurrency", "checkpointer")
    }
    options.update(tool_modules=tool_specs, workers=workers, is_inline=inline, max_steps=max_steps)
    options.update(where, **budgets)
    if batch is not None:
        records = local.run_many(target, batch, **options)
        for r in records:
            click.echo(r.model_dump_json())
        raise SystemExit(0 if all(r.status == "done" for r in records) else 1)
    with Progress(total=None, is_quiet=as_json) as progress:
        record = local.run(target, inputs, run_id=run_id, watcher=progress, **options)
    emit_record(record, as_json=as_json)
    exit_for(record)


@contextmanager
def _record_on(as_json: bool) -> Iterator[None]:
    """With --json, a goal whose planning failed prints its record (rejected plans)."""
    try:
        yield
    except PlanValidationError as e:
        if as_json and e.record is not None:
            click.echo(e.record.model_dump_json(indent=2))
        raise


def _is_given(value: Any) -> bool:
    """A flag's value that was given: a number (0 too) or a set switch."""
    return value is not None and value is not False


@cli.command()
@click.argument("run_id")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
@click.option("--redis-url", metavar="URL", help="Look the run up in Redis (TASKLOOM_REDIS_URL).")
@click.option(
    "--checkpointer",
    metavar="URL",
    help="LangGraph checkpoints: sqlite:///PATH or postgresql://… (TASKLOOM_CHECKPOINTER).",
)
def resume(
    run_id: str,
    tool_specs: tuple[str, ...],
    model: str | None,
    as_json: bool,
    redis_url: str | None = None,
    checkpointer: str | None = None,
) -> None:
    """Resume a crashed or failed run, local or submitted; finished steps are kept."""
    from taskloom.api import local, remote

    where: dict[str, Any] = {"redis_url": redis_url, "model": model, "checkpointer": checkpointer}
    with Progress(total=None, is_quiet=as_json) as progress:
        record = None
        if settings_from(**where).redis_url:  # a submitted run, if Redis has it
            record = remote.resume_submitted(
                run_id, tool_modules=tool_specs, watcher=progress, **where
            )
        if record is None:  # a local run (maybe dispatched over Redis): its checkpoint is here
            record = local.resume(run_id, tool_modules=tool_specs, watcher=progress, **where)
    emit_record(record, as_json=as_json)
    exit_for(record)


@cli.command()
@click.argument("plan_file", metavar="PLAN.json")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Also check $input references.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print {file, valid, steps, problems, error} as JSON."
)
def validate(plan_file: str, input_text: str | None, as_json: bool) -> None:
    """Validate a plan: exit 0 if valid, 2 with every reason."""
    from taskloom.api import local

    try:
        inputs = parse_inputs(input_text) if input_text else None
        plan = local.validate(plan_file, inputs=inputs)
    except UserError as e:
        if not as_json:
            raise
        problems = e.problems if isinstance(e, PlanValidationError) else [str(e)]
        result = {"file": plan_file, "valid": False, "steps": None, "problems": problems}
        click.echo(json.dumps({**result, "error": type(e).__name__}, ensure_ascii=False))
        raise SystemExit(e.exit_code) from e
    if as_json:
        result = {"file": plan_file, "valid": True, "steps": len(plan.steps), "problems": []}
        click.echo(json.dumps({**result, "error": None}, ensure_ascii=False))
    else:
        click.echo(f"{plan_file}: valid plan, {len(plan.steps)} steps")


@cli.command()
@click.argument("run_id")
@click.option("--html", "html_path", metavar="PATH", help="Write a self-contained HTML page.")
@click.option("--mermaid", is_flag=True, help="Print the run's plan as Mermaid, by status.")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def show(run_id: str, html_path: str | None, mermaid: bool, redis_url: str | None) -> None:
    """Draw a run: its plan coloured by status, and a timeline per worker."""
    from pathlib import Path

    from taskloom.api import remote
    from taskloom.views import render_html, run_mermaid

    if not html_path and not mermaid:
        raise InputError("show needs --html PATH or --mermaid")
    record = remote.load_record(run_id, redis_url=redis_url)
    if mermaid:
        click.echo(run_mermaid(record), nl=False)
    if html_path:
        try:
            Path(html_path).write_text(render_html(record), encoding="utf-8")
        except OSError as e:
            raise InputError(
                f"can't write {html_path}: {e.strerror}; choose a writable path"
            ) from e
        click.echo(f"wrote {html_path}", err=True)


@cli.command()
@click.option(
    "--examples",
    "examples_path",
    required=True,
    metavar="FILE.jsonl",
    help='Labelled examples, one {"step": ..., "expected": ...} a line (docs/calibration.md).',
)
@click.option("--out", metavar="FILE", help="Write here (default: TASKLOOM_HOME/calibration.json).")
@click.option(
    "--target",
    type=click.FloatRange(0.5, 0.999),
    default=0.95,
    show_default=True,
    help="Precision the accepted answers must reach.",
)
@click.option(
    "--level",
    type=click.FloatRange(0.5, 0.999),
    default=0.90,
    show_default=True,
    help="Confidence of the Clopper–Pearson lower bound on that precision.",
)
@click.option("--model", metavar="PATH", help="GGUF model for the steps (TASKLOOM_MODEL).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Steps decoded together.")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
def calibrate(
    examples_path: str,
    out: str | None,
    target: float,
    level: float,
    model: str | None,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Run labelled steps, and write the thresholds that reach a target precision."""
    from taskloom.api.calibrate import calibrate as fit
    from taskloom.api.calibrate import read_examples
    from taskloom.views.calibration import calibration_table

    examples = read_examples(examples_path)
    with click.progressbar(length=len(examples), label="running", file=sys.stderr) as bar:
        report = fit(
            examples,
            out=out,
            target=target,
            level=level,
            settings=settings_from(model=model, concurrency=concurrency),
            progress=bar.update,
        )
    for line in report.failed:
        click.echo(f"taskloom: warning: not graded: {line}", err=True)
    if as_json:
        click.echo(report.calibration.model_dump_json(indent=2, exclude_none=True))
    else:
        click.echo(calibration_table(report.calibration, report.graded, target=target, level=level))
    click.echo(
        f"wrote {report.path}; use it with TASKLOOM_CALIBRATION={report.path} (workers and runs)",
        err=True,
    )


@cli.command()
@click.option(
    "--examples",
    "examples_path",
    metavar="FILE.jsonl",
    help='Labelled examples, one {"step": ..., "expected": ...} a line; default: the bank.',
)
@click.option("--plan", "plan_path", metavar="FILE", help="With --step: learn that step's task.")
@click.option("--step", "step_id", metavar="ID", help="The plan's step whose task to learn.")
@click.option(
    "--shots", type=click.IntRange(1, 16), default=3, show_default=True, help="Examples shown."
)
@click.option(
    "--choose",
    type=click.Choice(["fixed", "nearest"]),
    help="How examples are chosen; default: both measured, the better kept.",
)
@click.option(
    "--adapter",
    is_flag=True,
    help="Train a LoRA adapter per kind instead of showing examples (the learn extra).",
)
@click.option("--model", metavar="PATH", help="GGUF model for the steps (TASKLOOM_MODEL).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Steps decoded together.")
@click.option("--json", "as_json", is_flag=True, help="Print the lessons as JSON.")
def learn(
    examples_path: str | None,
    plan_path: str | None,
    step_id: str | None,
    shots: int,
    choose: str | None,
    adapter: bool,
    model: str | None,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Learn from labelled answers: each step signature gets a lesson later runs use."""
    from taskloom.api.learn import (
        adapter_training,
        check_enough,
        chosen_examples,
        planned_runs,
        prune_adapters,
    )
    from taskloom.api.learn import learn as learn_from
    from taskloom.views.learning import lessons_table

    settings = settings_from(model=model, concurrency=concurrency)
    examples = chosen_examples(
        settings, examples_path=examples_path, plan_path=plan_path, step_id=step_id
    )
    check_enough(examples, shots=shots)
    recipe, chat = adapter_training(settings) if adapter else (None, None)
    ways = {"shots": shots, "choose": choose, "adapter": recipe}
    runs = planned_runs(examples, **ways)  # type: ignore[arg-type]
    with click.progressbar(length=max(runs, 1), label="learning", file=sys.stderr) as bar:
        found = learn_from(examples, settings=settings, model=chat, progress=bar.update, **ways)  # type: ignore[arg-type]
    pruned = prune_adapters(settings)
    if as_json:
        click.echo(json.dumps([f.lesson.model_dump(mode="json") for f in found if f.lesson]))
        return
    click.echo(lessons_table(found, where=settings.examples_path / "learned"))
    if pruned:
        click.echo(
            f"deleted {len(pruned)} older adapter file{'s' * (len(pruned) > 1)} no lesson"
            f" names (TASKLOOM_ADAPTERS_KEPT={settings.adapters_kept} newest kept)"
        )
