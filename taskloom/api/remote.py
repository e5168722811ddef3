"""Runs on a shared Redis: `submit`, `cancel`, `status`, `runs`, `wait`, `workers`, `serve`.

Each call needs `redis_url` (or `TASKLOOM_REDIS_URL`). A submitted run is driven by a
`runs` worker; its record lives in Redis for `Settings.record_ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.config import RUNS_QUEUE, Settings, settings_for
from taskloom.dispatch.broker import Broker
from taskloom.errors import ConfigError, InputError
from taskloom.views.status import RunView, running_workers, view
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.store import SqliteRunStore

if TYPE_CHECKING:
    from taskloom.api.cluster import Watcher
    from taskloom.api.targets import Target

# `status`, `result`, `cancel`, `workers` and `drain` import only what they read, so they
# start fast: the functions that build, run or serve workflows import LangGraph, the
# agents and the workers where they are called.


def connect_redis(settings: Settings, *, client_name: str = "taskloom") -> Broker:
    """A Broker for the configured Redis, checked to answer.

    Raises:
        ConfigError: no Redis is configured.
        RedisUnavailableError: it does not answer.
    """
    if not settings.redis_url:
        raise ConfigError("this command needs Redis; set TASKLOOM_REDIS_URL or pass --redis-url")
    broker = Broker(settings.redis_url, settings=settings, client_name=client_name)
    broker.ping()
    return broker


def submit(
    target: Target,
    inputs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    tool_modules: Iterable[str] = (),
    run_id: str | None = None,
    **options: Any,
) -> str:
    """Queue a run for the `runs` workers and return its run id.

    Raises:
        UserError: a bad target, inputs or queue name.
        RedisUnavailableError: Redis can't be reached.
    """
    from taskloom.api.targets import resolve_target
    from taskloom.workflows import submitted
    from taskloom.workflows.target import load_tools

    settings = settings_for(settings, options)
    inputs = dict(inputs or {})
    workflow = resolve_target(
        target, settings=settings, inputs=inputs, tools=load_tools(list(tool_modules))
    )
    label = str(target) if isinstance(target, str | Path) else workflow.name
    return submitted.submit(
        workflow,
        inputs,
        broker=connect_redis(settings),
        settings=settings,
        target=label,
        run_id=run_id,
    )


def unserved_queues(
    target: Target,
    inputs: dict[str, Any] | None = None,
    *,
    is_submitted: bool = False,
    tool_modules: Iterable[str] = (),
    settings: Settings | None = None,
    **options: Any,
) -> list[str]:
    """The queues a run of `target` needs that no live worker serves (its jobs would wait).

    A submitted run also needs the `runs` queue.
    """
    from taskloom.api.targets import resolve_target
    from taskloom.workflows import submitted
    from taskloom.workflows.target import load_tools

    settings = settings_for(settings, options)
    broker = connect_redis(settings)
    tools = load_tools(list(tool_modules))
    workflow = resolve_target(target, settings=settings, inputs=inputs or {}, tools=tools)
    queues = submitted.step_queues(workflow) | ({RUNS_QUEUE} if is_submitted else set())
    return sorted(q for q in queues if not broker.live_workers(q))


def cancel(run_id: str, *, settings: Settings | None = None, **options: Any) -> tuple[int, int]:
    """Cancel a submitted run: queued steps are dropped, running ones told to stop.

    Returns:
        (queued jobs cancelled, jobs still running).
    """
    from taskloom.workflows import submitted

    return submitted.cancel(connect_redis(settings_for(settings, options)), run_id)


def load_record(run_id: str, *, settings: Settings | None = None, **options: Any) -> RunRecord:
    """A run's record: from Redis when one is configured, else from this machine's runs.

    Raises:
        RunNotFoundError: no such run (or its record expired).
    """
    settings = settings_for(settings, options)
    if settings.redis_url:
        return RedisRunStore(connect_redis(settings)).load(run_id)
    return SqliteRunStore(settings.state_path).load(run_id)


def runs(
    *,
    status: str | None = None,
    limit: int = 20,
    settings: Settings | None = None,
    **options: Any,
) -> list[RunRecord]:
    """The latest runs, newest first: this machine's local runs and, when Redis is
    configured, the runs recorded there (submitted ones, and local runs over Redis).

    Args:
        status: only runs in this state (`pending`, `running`, `waiting`, `done`,
            `failed` or `cancelled`).
        limit: at most this many.

    Raises:
        InputError: an unknown `status`.
        RedisUnavailableError: Redis is configured and can't be reached.
    """
    settings = settings_for(settings, options)
    wanted = run_status(status) if status is not None else None
    found: dict[str, RunRecord] = {}
    if settings.state_path.exists():  # listing creates no state where no run ever ran
        local = SqliteRunStore(settings.state_path)
        try:
            found = {r.run_id: r for r in local.recent(status=wanted, limit=limit)}
        finally:
            local.close()
    if settings.redis_url:
        shared = RedisRunStore(connect_redis(settings)).recent(status=wanted, limit=limit)
        found |= {r.run_id: r for r in shared}  # the shared record is the one others see
    return sorted(found.values(), key=lambda r: r.created_at, reverse=True)[:limit]


def run_status(text: str) -> RunStatus:
    """A run status from its name.

    Raises:
        InputError: not a run status; the message names the allowed ones.
    """
    try:
        return RunStatus(text)
    except ValueError:
        allowed = ", ".join(s.value for s in RunStatus)
        raise InputError(f"unknown run status {text!r}; use one of: {allowed}") from None


def status(run_id: str, *, settings: Settings | None = None, **options: Any) -> RunView:
    """A run's record, with its jobs and dead letters when it ran over Redis."""
    settings = settings_for(settings, options)
    if settings.redis_url:
        return view(connect_redis(settings), run_id)
    return RunView(record=load_record(run_id, settings=settings))


def wait(
    run_id: str,
    *,
    timeout_s: float | None = None,
    settings: Settings | None = None,
    watcher: Watcher | None = None,
    **options: Any,
) -> RunRecord:
    """Wait for a submitted run to finish (or `timeout_s`); returns its latest record."""
    settings = settings_for(settings, options)
    store = RedisRunStore(connect_redis(settings))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if watcher is not None:
        watcher.watch(lambda: running_workers(store.broker, run_id))
    while True:
        step_s = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        record = store.wait_finished(run_id, timeout_s=step_s)
        if watcher is not None:
            watcher.update({"event": "poll", "total": _planned(record)}, record)
        if record.status.is_final:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record


def resume_submitted(
    run_id: str,
    *,
    settings: Settings | None = None,
    tool_modules: Iterable[str] = (),
    watcher: Watcher | None = None,
    **options: Any,
) -> RunRecord | None:
    """Drive a submitted run again, here; None if Redis has no such run."""
    from taskloom.workflows import submitted

    settings = settings_for(settings, options)
    return submitted.resume_submitted(
        connect_redis(settings),
        run_id,
        settings=settings,
        tool_specs=list(tool_modules),
        on_event=watcher.update if watcher is not None else None,
    )


def live_workers(*, settings: Settings | None = None, **options: Any) -> list[dict[str, str]]:
    """The live workers: name, model, GPU, queues, current step, jobs, heartbeat."""
    return connect_redis(settings_for(settings, options)).live_workers()


def serve(
    *,
    queues: Iterable[str] = (),
    tool_modules: Iterable[str] = (),
    name: str | None = None,
    concurrency: int | None = None,
    is_burst: bool = False,
    parent_pid: int | None = None,
    max_jobs: int | None = None,
    gpus: str | None = None,
    processes: int | None = None,
    child: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> int:
    """Run a worker in this process until it is stopped (or, with `is_burst`, idle); with
    `gpus` or `processes`, supervise this box's workers instead (`supervise`).

    Returns:
        The exit status: 0, or 75 for a supervisor's child that ran `max_jobs` jobs
        (its supervisor starts a fresh one).

    Raises:
        ConfigError: a bad queue name, `runs` mixed with SLM queues, a GPU on a
            CPU-only llama.cpp build, or a metrics port in use.
        ModelFileError: the model can't be loaded.
        MissingExtraError: an SLM worker without `taskloom[local]` installed.
    """
    from taskloom import calibration
    from taskloom.chat import gpu
    from taskloom.chat.load import check_local_model
    from taskloom.workers.box import serve_one
    from taskloom.workers.watchdog import EXIT_RESTART

    settings = settings_for(settings, options)
    queues = list(queues)
    if RUNS_QUEUE not in queues:
        check_local_model(settings)  # before Redis: a model box without the extra
        calibration.load(settings.calibration)  # a bad file fails here, not at each step
    if gpus is not None or processes is not None:
        args = [a for q in queues for a in ("--queue", q)]
        args += [a for t in tool_modules for a in ("--tools", t)]
        args += ["--burst"] if is_burst else []
        args += ["--concurrency", str(concurrency)] if concurrency else []
        args += ["--max-jobs", str(max_jobs)] if max_jobs else []
        return supervise(
            gpus=gpus,
            processes=1 if processes is None else processes,
            box=name,
            worker_args=args,
            settings=settings,
        )
    gpu.check_settings(settings)  # before Redis: a GPU this build can't use is bad input
    outcome = serve_one(
        connect_redis(settings, client_name="taskloom-worker"),
        settings=settings,
        queues=queues,
        tool_specs=list(tool_modules),
        name=name,
        concurrency=concurrency,
        is_burst=is_burst,
        parent_pid=parent_pid,
        max_jobs=max_jobs,
        child=child,
    )
    return EXIT_RESTART if outcome == "recycled" and child is not None else 0


def supervise(
    *,
    gpus: str | None = None,
    processes: int = 1,
    box: str | None = None,
    worker_args: Iterable[str] = (),
    settings: Settings | None = None,
    **options: Any,
) -> int:
    """Keep this box's workers alive: one per GPU of `gpus` (times `processes`), or
    `processes` on the CPU; the exit status once they are all drained or stopped
    (1 if one crash-looped).

    Raises:
        ConfigError: bad `processes` or `gpus`, a GPU on a CPU-only build, a metrics
            port in use.
        RedisUnavailableError: Redis can't be reached.
    """
    from taskloom.workers.box import plan_box, run_box

    settings = settings_for(settings, options)
    children = plan_box(settings, gpus=gpus, processes=processes, box=box)
    connect_redis(settings)  # fail here, not in every child
    return run_box(children, settings=settings, worker_args=list(worker_args))


def drain(
    names: Iterable[str] = (),
    *,
    is_all: bool = False,
    queue: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> list[str]:
    """Tell workers to drain: they finish their current steps, take no more and exit 0.

    Args:
        names: the workers (as `taskloom workers` lists them).
        is_all: every live worker (of `queue`, if given).
        queue: only the workers serving this queue.

    Returns:
        The workers told.

    Raises:
        ConfigError: neither names nor `is_all`, or a name no live worker has.
    """
    broker = connect_redis(settings_for(settings, options))
    live = {w["name"]: w for w in broker.live_workers(queue)}
    wanted = list(names)
    if not wanted and not is_all:
        raise ConfigError("name the workers to drain (see taskloom workers), or pass --all")
    unknown = [n for n in wanted if n not in live]
    if unknown:
        where = f" serving queue {queue!r}" if queue else ""
        raise ConfigError(
            f"no live worker named {unknown[0]!r}{where}; list them with taskloom workers"
        )
    chosen = sorted(live) if is_all and not wanted else wanted
    for name in chosen:
        broker.request_drain(f"rq:worker:{name}")
    return chosen


def _planned(record: RunRecord) -> int | None:
    return len(record.plan["steps"]) if record.plan else None
