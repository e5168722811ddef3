"""Commands that run here: run, resume, validate and show."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from taskloom.cli.app import cli
from taskloom.cli.common import (
    emit_record,
    load_record,
    make_dispatcher,
    parse_inputs,
    redis_broker,
    settings_from,
)
from taskloom.cli.goal import emit_goal_summary, goal_options, goal_settings, run_goal_command
from taskloom.config import Settings
from taskloom.errors import InputError
from taskloom.progress import Progress
from taskloom.workflows.record import RunStatus

if TYPE_CHECKING:
    from taskloom.workflows.store import RunStore


@cli.command()
@click.argument("target", required=False)
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to dispatch over (TASKLOOM_REDIS_URL).")
@click.option("--workers", default=1, show_default=True, help="Local workers to start.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option("--run-id", metavar="ID", help="Use this run id instead of a fresh one.")
@click.option("--inline", is_flag=True, help="Run steps in this process, without Redis.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
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
@click.option("--max-replans", type=int, metavar="N", help="Replans the joiner may ask for.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole plan before running it.")
def run(
    target: str | None,
    input_text: str | None,
    tool_specs: tuple[str, ...],
    redis_url: str | None,
    workers: int,
    model: str | None,
    run_id: str | None,
    inline: bool,
    as_json: bool,
    goal: str | None,
    no_route: bool,
    no_stream: bool,
    max_steps: int | None,
    **flags: Any,
) -> None:
    """Run TARGET (a plan file, file.py:name or module:name), or plan and run --goal."""
    from taskloom.workflows.runner import new_run_id, sqlite_checkpointer
    from taskloom.workflows.runner import run as run_workflow
    from taskloom.workflows.store import SqliteRunStore
    from taskloom.workflows.target import load_target, load_tools

    settings = settings_from(redis_url, model)
    inputs = parse_inputs(input_text)
    if goal is not None:
        if target:
            raise click.UsageError("give TARGET or --goal, not both")
        record = run_goal_command(
            goal,
            inputs,
            goal_settings(settings, **flags),
            tool_specs=tool_specs,
            is_inline=inline,
            workers=workers,
            run_id=run_id,
            is_routed=not no_route,
            is_streaming=not no_stream,
            max_steps=max_steps,
            as_json=as_json,
        )
        emit_record(record, as_json=as_json)
        emit_goal_summary(record)
        sys.exit(0 if record.status == RunStatus.DONE else 1)
    if not target:
        raise click.UsageError("give a TARGET (plan.json, file.py:name or module:name) or --goal")
    workflow = load_target(
        target, max_steps=settings.max_steps, inputs=inputs, tools=load_tools(list(tool_specs))
    )
    total = len(workflow.plan.steps) if workflow.plan else None
    store = SqliteRunStore(settings.state_path)
    run_id = run_id or new_run_id()
    with (
        make_dispatcher(
            settings,
            workflow,
            is_inline=inline,
            workers=workers,
            tool_specs=tool_specs,
            target=target,
        ) as dispatcher,
        sqlite_checkpointer(settings.state_path) as checkpointer,
        Progress(
            total=total, is_quiet=as_json, workers_of=workers_of(dispatcher, run_id)
        ) as progress,
    ):
        record = run_workflow(
            workflow,
            inputs,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=shared_store(store, dispatcher, settings),
            run_id=run_id,
            target=target,
            on_event=progress.update,
        )
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


def shared_store(store: RunStore, dispatcher: Any, settings: Settings) -> RunStore:
    """Over a configured Redis, the record goes there too, for `status` on any machine."""
    from taskloom.workers.redis_dispatch import RedisDispatcher
    from taskloom.workflows.redis_store import RedisRunStore
    from taskloom.workflows.store import MirroredRunStore

    if settings.redis_url and isinstance(dispatcher, RedisDispatcher):
        return MirroredRunStore(store, RedisRunStore(dispatcher.broker))
    return store


def workers_of(dispatcher: Any, run_id: str) -> Callable[[], dict[str, str]] | None:
    """For a run over Redis, what tells the progress line which worker runs each step."""
    from taskloom.workers.redis_dispatch import RedisDispatcher
    from taskloom.workflows.report import running_workers

    if not isinstance(dispatcher, RedisDispatcher):
        return None
    return partial(running_workers, dispatcher.broker, run_id)


@cli.command()
@click.argument("run_id")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
@click.option("--redis-url", metavar="URL", help="Look the run up in Redis (TASKLOOM_REDIS_URL).")
def resume(
    run_id: str,
    tool_specs: tuple[str, ...],
    model: str | None,
    as_json: bool,
    redis_url: str | None = None,
) -> None:
    """Resume a crashed or failed run, local or submitted; finished steps are kept."""
    from taskloom.workflows.definition import Workflow
    from taskloom.workflows.runner import resume as resume_run
    from taskloom.workflows.runner import sqlite_checkpointer
    from taskloom.workflows.store import SqliteRunStore
    from taskloom.workflows.target import load_tools, load_workflow

    settings = settings_from(redis_url, model)
    if settings.redis_url:
        resume_redis_run(run_id, settings, tool_specs=tool_specs, as_json=as_json)
    store = SqliteRunStore(settings.state_path)
    record = store.load(run_id)
    tools = load_tools(list(tool_specs))
    if record.plan is not None:
        from taskloom.plan import load_plan

        workflow = Workflow.from_plan(load_plan(record.plan, max_steps=10**6), tools=tools)
    else:
        workflow = load_workflow(record.target)
        for t in tools:
            workflow.tools.add(t)
    with (
        make_dispatcher(settings, workflow) as dispatcher,
        sqlite_checkpointer(settings.state_path) as checkpointer,
        Progress(total=len(record.steps) or None, is_quiet=as_json) as progress,
    ):
        record = resume_run(
            record,
            workflow,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            on_event=progress.update,
        )
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


def resume_redis_run(
    run_id: str, settings: Settings, *, tool_specs: tuple[str, ...], as_json: bool
) -> None:
    """Resume a run submitted to Redis, here; returns only if Redis has no such run."""
    from taskloom.workflows import remote

    broker = redis_broker(settings)
    with Progress(total=None, is_quiet=as_json) as progress:
        record = remote.resume_submitted(
            broker, run_id, settings=settings, tool_specs=list(tool_specs), on_event=progress.update
        )
    if record is None:
        return  # a local run that dispatched over Redis: its checkpoint is in SQLite
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


@cli.command()
@click.argument("plan_file", metavar="PLAN.json")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Also check $input references.")
def validate(plan_file: str, input_text: str | None) -> None:
    """Validate a plan: exit 0 if valid, 2 with every reason."""
    from pathlib import Path

    from taskloom.workflows.target import read_plan

    settings = settings_from()
    inputs = parse_inputs(input_text) if input_text else None
    plan = read_plan(Path(plan_file), max_steps=settings.max_steps, inputs=inputs)
    click.echo(f"{plan_file}: valid plan, {len(plan.steps)} steps")


@cli.command()
@click.argument("run_id")
@click.option("--html", "html_path", metavar="PATH", help="Write a self-contained HTML page.")
@click.option("--mermaid", is_flag=True, help="Print the run's plan as Mermaid, by status.")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def show(run_id: str, html_path: str | None, mermaid: bool, redis_url: str | None) -> None:
    """Draw a run: its plan coloured by status, and a timeline per worker."""
    from pathlib import Path

    from taskloom.views import render_html, run_mermaid

    if not html_path and not mermaid:
        raise InputError("show needs --html PATH or --mermaid")
    record = load_record(run_id, settings_from(redis_url))
    if mermaid:
        click.echo(run_mermaid(record), nl=False)
    if html_path:
        try:
            Path(html_path).write_text(render_html(record), encoding="utf-8")
        except OSError as e:
            raise InputError(
                f"can't write {html_path}: {e.strerror}; choose a writable path"
            ) from None
        click.echo(f"wrote {html_path}", err=True)
