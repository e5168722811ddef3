"""Commands for distributed runs: workers, and runs submitted to Redis."""

from __future__ import annotations

import json
from typing import Any

import click

from taskloom.cli.app import EXIT_STILL_RUNNING, cli
from taskloom.cli.common import emit_record, exit_for, parse_inputs, warn_unserved
from taskloom.views.progress import Progress
from taskloom.views.status import workers_help


@cli.command()
@click.option("--queue", "queues", multiple=True, metavar="NAME", help="Queue to serve (repeat).")
@click.option("--model", metavar="PATH", help="GGUF model, or 'scripted' (TASKLOOM_MODEL).")
@click.option("--gpu", type=int, metavar="N", help="The GPU the model runs on (TASKLOOM_GPU).")
@click.option("--n-gpu-layers", type=int, metavar="N", help="Layers to offload (-1: all).")
@click.option("--gpus", metavar="LIST|all", help="Supervise a worker per GPU (e.g. 0,1).")
@click.option("--processes", type=int, metavar="N", help="Supervise N workers (per GPU).")
@click.option("--max-jobs", type=click.IntRange(min=1), metavar="N", help="Recycle after N jobs.")
@click.option("--metrics-port", type=int, metavar="P", help="Serve /metrics and /healthz.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to serve (TASKLOOM_REDIS_URL).")
@click.option(
    "--calibration",
    metavar="FILE",
    help="Calibration from taskloom calibrate (TASKLOOM_CALIBRATION).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Steps decoded at once (SLM queues; 16, TASKLOOM_CONCURRENCY), or runs at once "
    "(runs queue; 8).",
)
@click.option(
    "--checkpointer",
    metavar="URL",
    help="A runs worker's LangGraph checkpoints: sqlite:///PATH or postgresql://….",
)
@click.option("--name", metavar="NAME", help="Worker name (default host.pid.tag); box name.")
@click.option("--parent-pid", type=int, hidden=True, help="Exit when this process is gone.")
@click.option("--child", hidden=True, help="SUPERVISOR_PID:GPU:INDEX, from a supervisor.")
def worker(
    queues: tuple[str, ...],
    burst: bool,
    tool_specs: tuple[str, ...],
    concurrency: int | None,
    name: str | None,
    parent_pid: int | None,
    **flags: Any,
) -> None:
    """Serve SLM queues with a resident model, or `--queue runs` to coordinate runs.

    With --gpus or --processes: supervise this box's workers (restarts, drain on SIGTERM).
    """
    from taskloom.api import remote
    from taskloom.cli.app import show_worker_lifecycle

    show_worker_lifecycle()
    raise SystemExit(
        remote.serve(
            queues=queues,
            tool_modules=tool_specs,
            name=name,
            concurrency=concurrency,
            is_burst=burst,
            parent_pid=parent_pid,
            **flags,
        )
    )


@cli.command()
@click.argument("names", nargs=-1, metavar="WORKER...")
@click.option("--all", "is_all", is_flag=True, help="Drain every live worker.")
@click.option("--queue", metavar="NAME", help="Only the workers serving this queue.")
@click.option("--redis-url", metavar="URL", help="Redis the workers serve.")
def drain(names: tuple[str, ...], is_all: bool, queue: str | None, redis_url: str | None) -> None:
    """Tell workers to finish their current steps, take no more, and exit 0."""
    from taskloom.api import remote

    for name in remote.drain(names, is_all=is_all, queue=queue, redis_url=redis_url):
        click.echo(f"draining {name}")


@cli.command()
@click.argument("target")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="The run's inputs.")
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE", help="Tools to register.")
@click.option("--redis-url", metavar="URL", help="Redis to submit to (TASKLOOM_REDIS_URL).")
@click.option("--run-id", metavar="ID", help="Use this run id instead of a fresh one.")
@click.option(
    "--review",
    type=click.Choice(["uncertain", "never"]),
    help="Ask a person about steps without `review` (TASKLOOM_REVIEW; default never).",
)
def submit(
    target: str,
    input_text: str | None,
    tool_specs: tuple[str, ...],
    redis_url: str | None,
    run_id: str | None,
    review: str | None,
) -> None:
    """Queue TARGET for the `runs` workers and print its run id."""
    from taskloom.api import remote

    inputs = parse_inputs(input_text)
    run_id = remote.submit(
        target, inputs, tool_modules=tool_specs, run_id=run_id, redis_url=redis_url, review=review
    )
    unserved = remote.unserved_queues(
        target, inputs, is_submitted=True, tool_modules=tool_specs, redis_url=redis_url
    )
    warn_unserved(unserved)
    if not target.endswith(".json") and "runs" in unserved:
        click.echo(
            f"taskloom: note: the runs workers find workflow {target.rpartition(':')[2]!r} "
            "only if started with --tools naming its module",
            err=True,
        )
    click.echo(run_id)


@cli.command()
@click.argument("run_id")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def status(run_id: str, redis_url: str | None, as_json: bool) -> None:
    """Show a run: each step's state, attempts, worker, and dead letters."""
    from taskloom.api import remote
    from taskloom.views.status import format_status

    shown = remote.status(run_id, redis_url=redis_url)
    if as_json:
        data = shown.record.model_dump(mode="json") | {"jobs": shown.jobs, "dead": shown.dead}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_status(shown))


@cli.command()
@click.option(
    "--status",
    metavar="STATUS",
    help="Only runs in this state: pending, running, waiting, done, failed or cancelled.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, metavar="N", help="At most N (20)."
)
@click.option("--redis-url", metavar="URL", help="Redis whose runs to list too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def runs(status: str | None, limit: int, redis_url: str | None, as_json: bool) -> None:
    """List runs, newest first: this machine's, and Redis's when one is configured."""
    from taskloom.api import remote
    from taskloom.views.runs import format_runs, run_summary

    found = remote.runs(status=status, limit=limit, redis_url=redis_url)
    if as_json:
        for record in found:
            click.echo(json.dumps(run_summary(record)))
    else:
        click.echo(format_runs(found))


@cli.command()
@click.argument("run_id")
@click.option("--wait", "is_waiting", is_flag=True, help="Wait until the run finishes.")
@click.option("--timeout", "timeout_s", type=float, metavar="S", help="Give up waiting after S.")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
def result(
    run_id: str, is_waiting: bool, timeout_s: float | None, redis_url: str | None, as_json: bool
) -> None:
    """Print a run's output (exit 1 if it failed, 75 if it is still running)."""
    from taskloom.api import remote
    from taskloom.cli.common import settings_from

    if is_waiting and settings_from(redis_url=redis_url).redis_url:
        with Progress(total=None, is_quiet=as_json) as progress:
            record = remote.wait(run_id, timeout_s=timeout_s, watcher=progress, redis_url=redis_url)
    else:
        record = remote.load_record(run_id, redis_url=redis_url)
    if not record.status.is_final:
        hint = "wait longer with --wait --timeout S" if is_waiting else "pass --wait to wait"
        click.echo(f"taskloom: run {run_id} is still {record.status.value}; {hint}", err=True)
        raise SystemExit(EXIT_STILL_RUNNING)
    emit_record(record, as_json=as_json)
    exit_for(record)


@cli.command()
@click.argument("run_id")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def cancel(run_id: str, redis_url: str | None) -> None:
    """Cancel a submitted run: queued steps are dropped, running ones told to stop."""
    from taskloom.api import remote

    queued, running = remote.cancel(run_id, redis_url=redis_url)
    click.echo(f"run {run_id}: cancelled {queued} queued job(s); told {running} running to stop")


@cli.command(help=workers_help())
@click.option("--redis-url", metavar="URL", help="Redis the workers serve.")
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
def workers(redis_url: str | None, as_json: bool) -> None:
    from taskloom.api import remote
    from taskloom.cli.common import settings_from
    from taskloom.views.status import format_workers

    live = remote.live_workers(redis_url=redis_url)
    if as_json:
        click.echo(json.dumps(live, indent=2))
    else:
        click.echo(format_workers(live, lease_s=settings_from(redis_url=redis_url).lease_s))
