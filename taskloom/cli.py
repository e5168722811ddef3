"""The `taskloom` command: calls library functions and maps errors to exit codes.

Exit codes: 0 success, 1 the run failed, 2 usage or validation error, 3 infrastructure
unavailable. An error is one line on stderr; `--debug` adds the traceback. This is the
only module that configures logging.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import structlog

from taskloom.config import Settings
from taskloom.errors import InputError, TaskloomError
from taskloom.progress import Progress
from taskloom.workers.dispatch import Dispatcher
from taskloom.workers.inline import InlineDispatcher
from taskloom.workflows import RunRecord, RunStatus, SqliteRunStore, Workflow, sqlite_checkpointer
from taskloom.workflows import resume as resume_run
from taskloom.workflows import run as run_workflow
from taskloom.workflows.target import load_target, load_tools, load_workflow, read_json, read_plan


def configure_logging(*, verbose: int, is_json: bool) -> None:
    """Human-readable logs on a terminal, JSON with --log-json; warnings only by default."""
    level = logging.WARNING - 10 * min(verbose, 2)
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if is_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--log-json", is_flag=True, help="Log JSON lines to stderr.")
@click.option("-v", "--verbose", count=True, help="More logs (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_json: bool, verbose: int) -> None:
    """taskloom: a large model plans, small models execute."""
    configure_logging(verbose=verbose, is_json=log_json)
    ctx.obj = {"debug": debug}


def parse_inputs(text: str | None) -> dict[str, Any]:
    """--input JSON|@FILE → a JSON object."""
    if text is None:
        return {}
    value = read_json(text, what="--input")
    if not isinstance(value, dict):
        raise InputError(f"--input must be a JSON object, got {type(value).__name__}")
    return value


def settings_from(redis_url: str | None = None, model: str | None = None) -> Settings:
    """Environment settings, overridden by flags."""
    settings = Settings.from_env()
    updates = {k: v for k, v in {"redis_url": redis_url, "model": model}.items() if v}
    return settings.model_copy(update=updates)


@contextmanager
def make_dispatcher(settings: Settings, workflow: Workflow) -> Iterator[Dispatcher]:
    """The dispatcher a local run uses: in-process, the model loaded on first use."""
    dispatcher = InlineDispatcher(tools=workflow.tools, settings=settings)
    try:
        yield dispatcher
    finally:
        dispatcher.close()


def emit_record(record: RunRecord, *, as_json: bool) -> None:
    """Print a finished run: the record with --json, else the output and a summary."""
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    elif record.status == RunStatus.DONE:
        out = record.output
        click.echo(out if isinstance(out, str) else json.dumps(out, indent=2, ensure_ascii=False))
    t = record.totals
    seconds = (record.finished_at or record.created_at) - record.created_at
    click.echo(
        f"run {record.run_id} {record.status.value}: {t.done}/{t.steps} steps, "
        f"{t.prompt_tokens + t.completion_tokens} tokens, ${t.cost_usd:.6f}, {seconds:.1f}s",
        err=True,
    )
    if record.status != RunStatus.DONE and record.error:
        click.echo(f"taskloom: error: {record.error['message']}", err=True)
        click.echo(f"resume with: taskloom resume {record.run_id}", err=True)


@cli.command()
@click.argument("target")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to dispatch over (TASKLOOM_REDIS_URL).")
@click.option("--workers", default=1, show_default=True, help="Local workers to start.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option("--run-id", metavar="ID", help="Use this run id instead of a fresh one.")
@click.option("--inline", is_flag=True, help="Run steps in this process, without Redis.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
def run(
    target: str,
    input_text: str | None,
    tool_specs: tuple[str, ...],
    redis_url: str | None,
    workers: int,
    model: str | None,
    run_id: str | None,
    inline: bool,
    as_json: bool,
) -> None:
    """Run TARGET: a plan file (*.json), file.py:name or module:name."""
    settings = settings_from(redis_url, model)
    inputs = parse_inputs(input_text)
    workflow = load_target(
        target, max_steps=settings.max_steps, inputs=inputs, tools=load_tools(list(tool_specs))
    )
    total = len(workflow.plan.steps) if workflow.plan else None
    store = SqliteRunStore(settings.state_path)
    with (
        make_dispatcher(settings, workflow) as dispatcher,
        sqlite_checkpointer(settings.state_path) as checkpointer,
        Progress(total=total) as progress,
    ):
        if as_json:
            progress.enabled = False
        record = run_workflow(
            workflow,
            inputs,
            dispatcher=dispatcher,
            settings=settings,
            checkpointer=checkpointer,
            store=store,
            run_id=run_id,
            target=target,
            on_event=progress.update,
        )
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


@cli.command()
@click.argument("run_id")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--model", metavar="PATH", help="GGUF model for SLM steps (TASKLOOM_MODEL).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
def resume(run_id: str, tool_specs: tuple[str, ...], model: str | None, as_json: bool) -> None:
    """Resume a crashed or failed local run; finished steps are not run again."""
    settings = settings_from(model=model)
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
        Progress(total=len(record.steps) or None) as progress,
    ):
        progress.enabled = progress.enabled and not as_json
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


@cli.command()
@click.argument("plan_file", metavar="PLAN.json")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Also check $input references.")
def validate(plan_file: str, input_text: str | None) -> None:
    """Validate a plan: exit 0 if valid, 2 with every reason."""
    from pathlib import Path

    settings = settings_from()
    inputs = parse_inputs(input_text) if input_text else None
    plan = read_plan(Path(plan_file), max_steps=settings.max_steps, inputs=inputs)
    click.echo(f"{plan_file}: valid plan, {len(plan.steps)} steps")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="taskloom", standalone_mode=False)
        sys.exit(0)
    except TaskloomError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"taskloom: error: {one_line(str(e))}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("taskloom: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"taskloom: error: {e.format_message()}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("taskloom: interrupted; resume with taskloom resume RUN_ID", err=True)
        sys.exit(130)
    except Exception as e:  # a bug in taskloom: still one line, unless --debug
        if debug:
            traceback.print_exc()
        click.echo(
            f"taskloom: internal error: {type(e).__name__}: {one_line(str(e))} "
            "(rerun with --debug and report it)",
            err=True,
        )
        sys.exit(1)


def one_line(text: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(text.split())


if __name__ == "__main__":
    main()
