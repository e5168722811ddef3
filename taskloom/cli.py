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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

import click
import structlog

from taskloom.chat import ChatModel
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
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )


class _Stderr:
    """Whatever sys.stderr is at the time of writing (loggers are cached; stderr may not be)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


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
def make_dispatcher(
    settings: Settings,
    workflow: Workflow,
    *,
    is_inline: bool | None = None,
    workers: int = 1,
    tool_specs: tuple[str, ...] = (),
    target: str = "",
) -> Iterator[Dispatcher]:
    """The dispatcher a run uses.

    `--inline` (or a caller that doesn't choose, such as resume of a local run): steps
    run in this process. A Redis URL: steps go to the workers serving it. Otherwise the
    embedded cluster: a local server and `workers` worker processes, same code path.
    """
    from taskloom.workers.embedded import EmbeddedCluster
    from taskloom.workers.redis_dispatch import RedisDispatcher

    dispatcher: Dispatcher
    if is_inline or (is_inline is None and not settings.redis_url):
        dispatcher = InlineDispatcher(tools=workflow.tools, settings=settings)
        try:
            yield dispatcher
        finally:
            dispatcher.close()
        return
    if settings.redis_url:
        from taskloom.workflows.remote import step_queues

        dispatcher = RedisDispatcher(settings=settings)
        dispatcher.broker.ping()
        warn_unserved(dispatcher.broker, step_queues(workflow))
        try:
            yield dispatcher
        finally:
            dispatcher.close()
        return
    module = target.rpartition(":")[0] if ":" in target and not target.endswith(".json") else ""
    specs = [*tool_specs, module] if module else list(tool_specs)
    with EmbeddedCluster(settings, workers=workers, tool_specs=specs) as cluster:
        dispatcher = RedisDispatcher(settings=cluster.settings, health=cluster.check)
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


def slm_factory(dispatcher: Dispatcher, settings: Settings) -> Callable[[], ChatModel]:
    """The small model for the router and a local planner: the inline dispatcher's own."""
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
    from taskloom.workflows.goal import goal_agents, run_goal

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
        Progress(total=None) as progress,
    ):
        progress.enabled = progress.enabled and not as_json
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
    from taskloom.agents.diagram import mermaid as to_mermaid
    from taskloom.workflows.goal import goal_agents

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


# -- distributed runs: workers and runs submitted to Redis ------------------------------


def redis_broker(settings: Settings) -> Any:
    """A Broker for the configured Redis, checked to answer."""
    from taskloom.errors import ConfigError
    from taskloom.workers.broker import Broker

    if not settings.redis_url:
        raise ConfigError("this command needs Redis; set TASKLOOM_REDIS_URL or pass --redis-url")
    broker = Broker(settings.redis_url, settings=settings)
    broker.ping()
    return broker


def warn_unserved(broker: Any, queues: set[str]) -> None:
    """Warn on stderr about each queue no live worker serves (its jobs would just wait)."""
    for queue in sorted(queues):
        if not broker.live_workers(queue):
            click.echo(
                f"taskloom: warning: no live worker serves queue {queue!r}; "
                f"start one with: taskloom worker --queue {queue}",
                err=True,
            )


def resume_redis_run(
    run_id: str, settings: Settings, *, tool_specs: tuple[str, ...], as_json: bool
) -> None:
    """Resume a run submitted to Redis, here; returns only if Redis has no such run."""
    from taskloom.workflows import remote

    broker = redis_broker(settings)
    with Progress(total=None) as progress:
        progress.enabled = progress.enabled and not as_json
        record = remote.resume_submitted(
            broker, run_id, settings=settings, tool_specs=list(tool_specs), on_event=progress.update
        )
    if record is None:
        return  # a local run that dispatched over Redis: its checkpoint is in SQLite
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


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
    """Show a submitted run: each step's state, attempts, worker, and dead letters."""
    from taskloom.workflows import remote
    from taskloom.workflows.report import format_status

    view = remote.view(redis_broker(settings_from(redis_url)), run_id)
    if as_json:
        data = view.record.model_dump(mode="json") | {"jobs": view.jobs, "dead": view.dead}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_status(view))


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait until the run finishes.")
@click.option("--timeout", "timeout_s", type=float, metavar="S", help="Give up waiting after S.")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run record as JSON.")
def result(
    run_id: str, wait: bool, timeout_s: float | None, redis_url: str | None, as_json: bool
) -> None:
    """Print a submitted run's output (exit 1 if it failed or has not finished)."""
    from taskloom.workflows.redis_store import RedisRunStore

    store = RedisRunStore(redis_broker(settings_from(redis_url)))
    record = store.wait_finished(run_id, timeout_s=timeout_s) if wait else store.load(run_id)
    if record.status in (RunStatus.PENDING, RunStatus.RUNNING):
        click.echo(f"run {run_id} is {record.status.value}; pass --wait to wait for it", err=True)
        sys.exit(1)
    emit_record(record, as_json=as_json)
    sys.exit(0 if record.status == RunStatus.DONE else 1)


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


def load_record(run_id: str, settings: Settings) -> RunRecord:
    """A run's record: from Redis when one is configured, else from this machine's runs."""
    if settings.redis_url:
        from taskloom.workflows.redis_store import RedisRunStore

        return RedisRunStore(redis_broker(settings)).load(run_id)
    return SqliteRunStore(settings.state_path).load(run_id)


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
