"""What the commands share: settings from flags, inputs, dispatchers, records, Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from taskloom.config import Settings
from taskloom.errors import InputError
from taskloom.workflows.record import RunRecord, RunStatus

if TYPE_CHECKING:
    from taskloom.workers.dispatch import Dispatcher
    from taskloom.workflows.definition import Workflow


def parse_inputs(text: str | None) -> dict[str, Any]:
    """--input JSON|@FILE → a JSON object."""
    from taskloom.workflows.target import read_json

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
    from taskloom.workers.inline import InlineDispatcher
    from taskloom.workers.redis_dispatch import RedisDispatcher

    dispatcher: Dispatcher
    if is_inline or (is_inline is None and not settings.redis_url):
        if settings.model and settings.model != "scripted":  # a bad path is the user's: exit 2
            from pathlib import Path

            from taskloom.workers.host import check_model_file

            check_model_file(Path(settings.model).expanduser())
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
        if not record.target.startswith("goal"):  # a goal run re-plans instead: run it again
            click.echo(f"resume with: taskloom resume {record.run_id}", err=True)


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


def load_record(run_id: str, settings: Settings) -> RunRecord:
    """A run's record: from Redis when one is configured, else from this machine's runs."""
    from taskloom.workflows.store import SqliteRunStore

    if settings.redis_url:
        from taskloom.workflows.redis_store import RedisRunStore

        return RedisRunStore(redis_broker(settings)).load(run_id)
    return SqliteRunStore(settings.state_path).load(run_id)
