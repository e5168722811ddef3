"""Commands for distributed runs: workers, and runs submitted to Redis."""

from __future__ import annotations

import json
import sys
import time
from functools import partial

import click

from taskloom.cli.app import cli
from taskloom.cli.common import (
    emit_record,
    load_record,
    parse_inputs,
    redis_broker,
    settings_from,
    warn_unserved,
)
from taskloom.config import Settings
from taskloom.progress import Progress
from taskloom.workflows.record import RunRecord, RunStatus


@cli.command()
@click.option("--queue", "queues", multiple=True, metavar="NAME", help="Queue to serve (repeat).")
@click.option("--model", metavar="PATH", help="GGUF model, or 'scripted' (TASKLOOM_MODEL).")
@click.option("--gpu", type=int, metavar="N", help="The GPU the model runs on.")
@click.option("--n-gpu-layers", type=int, metavar="N", help="Layers to offload (-1: all).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to serve (TASKLOOM_REDIS_URL).")
@click.option("--concurrency", type=int, metavar="N", help="Runs at once (runs queue; 8).")
@click.option("--name", metavar="NAME", help="Worker name (default host.pid.tag).")
@click.option("--parent-pid", type=int, hidden=True, help="Exit when this process is gone.")
def worker(
    queues: tuple[str, ...],
    model: str | None,
    gpu: int | None,
    n_gpu_layers: int | None,
    burst: bool,
    tool_specs: tuple[str, ...],
    redis_url: str | None,
    concurrency: int | None,
    name: str | None,
    parent_pid: int | None,
) -> None:
    """Serve SLM queues with a resident model, or `--queue runs` to coordinate runs."""
    from taskloom.workflows import remote

    settings = settings_from(redis_url, model)
    settings = settings.model_copy(update={"gpu": gpu, "n_gpu_layers": n_gpu_layers})
    remote.build_worker(
        redis_broker(settings),
        settings=settings,
        queues=list(queues),
        tool_specs=list(tool_specs),
        name=name,
        concurrency=concurrency,
        is_burst=burst,
        parent_pid=parent_pid,
    ).work()


@cli.command()
@click.argument("target")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to submit to (TASKLOOM_REDIS_URL).")
@click.option("--run-id", metavar="ID", help="Use this run id instead of a fresh one.")
def submit(
    target: str,
    input_text: str | None,
    tool_specs: tuple[str, ...],
    redis_url: str | None,
    run_id: str | None,
) -> None:
    """Queue TARGET for the `runs` workers and print its run id."""
    from taskloom.config import RUNS_QUEUE
    from taskloom.workflows import remote
    from taskloom.workflows.target import load_target, load_tools

    settings = settings_from(redis_url)
    inputs = parse_inputs(input_text)
    workflow = load_target(
        target, max_steps=settings.max_steps, inputs=inputs, tools=load_tools(list(tool_specs))
    )
    broker = redis_broker(settings)
    run_id = remote.submit(
        workflow, inputs, broker=broker, settings=settings, target=target, run_id=run_id
    )
    warn_unserved(broker, {RUNS_QUEUE} | remote.step_queues(workflow))
    if workflow.plan is None:
        click.echo(
            f"taskloom: note: the runs workers find workflow {workflow.name!r} only if "
            "started with --tools naming its module",
            err=True,
        )
    click.echo(run_id)


@cli.command()
@click.argument("run_id")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def status(run_id: str, redis_url: str | None, as_json: bool) -> None:
    """Show a run: each step's state, attempts, worker, and dead letters."""
    from taskloom.workflows.report import RunView, format_status, view

    settings = settings_from(redis_url)
    if settings.redis_url:
        shown = view(redis_broker(settings), run_id)
    else:
        shown = RunView(record=load_record(run_id, settings))
    if as_json:
        data = shown.record.model_dump(mode="json") | {"jobs": shown.jobs, "dead": shown.dead}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_status(shown))


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait until the run finishes.")
@click.option("--timeout", "timeout_s", type=float, metavar="S", help="Give up waiting after S.")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
def result(
    run_id: str, wait: bool, timeout_s: float | None, redis_url: str | None, as_json: bool
) -> None:
    """Print a run's output (exit 1 if it failed or has not finished)."""
    settings = settings_from(redis_url)
    if wait and settings.redis_url:
        record = wait_with_progress(run_id, settings, timeout_s=timeout_s, as_json=as_json)
    else:
        record = load_record(run_id, settings)
    if record.status in (RunStatus.PENDING, RunStatus.RUNNING):
        click.echo(f"run {run_id} is {record.status.value}; pass --wait to wait for it", err=True)
        sys.exit(1)
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


def wait_with_progress(
    run_id: str, settings: Settings, *, timeout_s: float | None, as_json: bool
) -> RunRecord:
    """Wait for a submitted run to finish, drawing its progress on a terminal."""
    from taskloom.workflows.redis_store import RedisRunStore
    from taskloom.workflows.report import running_workers

    store = RedisRunStore(redis_broker(settings))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    workers_of = partial(running_workers, store.broker, run_id)
    with Progress(total=None, is_quiet=as_json, workers_of=workers_of) as progress:
        while True:
            step_s = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            record = store.wait_finished(run_id, timeout_s=step_s)
            progress.total = len(record.plan["steps"]) if record.plan else None
            progress.update({"event": "poll"}, record)
            if record.status not in (RunStatus.PENDING, RunStatus.RUNNING):
                return record
            if deadline is not None and time.monotonic() >= deadline:
                return record


@cli.command()
@click.argument("run_id")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def cancel(run_id: str, redis_url: str | None) -> None:
    """Cancel a submitted run: queued steps are dropped, running ones told to stop."""
    from taskloom.workflows import remote

    queued, running = remote.cancel(redis_broker(settings_from(redis_url)), run_id)
    click.echo(f"run {run_id}: cancelled {queued} queued job(s); told {running} running to stop")


@cli.command()
@click.option("--redis-url", metavar="URL", help="Redis the workers serve.")
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
def workers(redis_url: str | None, as_json: bool) -> None:
    """List live workers: model, GPU, queues, current step, jobs, mean step time, heartbeat."""
    from taskloom.workflows.report import format_workers

    settings = settings_from(redis_url)
    live = redis_broker(settings).live_workers()
    text = format_workers(live, lease_s=settings.lease_s)
    click.echo(json.dumps(live, indent=2) if as_json else text)
