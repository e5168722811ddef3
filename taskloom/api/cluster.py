"""A cluster that stays up: `Cluster` runs target after target on one start-up.

Like `ray.init()`: `with taskloom.Cluster(workers=2) as cluster:` then `cluster.run`,
`cluster.submit` and `cluster.run_many`, as often as needed, on one start-up. What it
starts is what `connect` chooses from the settings: with no Redis configured, the
embedded cluster (a local Redis-compatible server and `workers` local worker processes,
each loading the model once); with `redis_url`, nothing (the workers there serve it);
inline, the model in this process.

It starts at its first run, once that run's target has loaded: a bad target fails
before anything starts, and the target's tool modules reach the workers. `taskloom.run`
is a Cluster used once, and `taskloom.run_many` one used for a batch. Runs submitted
together are in flight together, so a batching worker (`Settings.concurrency`) decodes
their steps in one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver

from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.api.targets import (
    Target,
    ToolsArg,
    needs_slm,
    registry,
    resolve_target,
    worker_modules,
)
from taskloom.chat.load import check_local_model
from taskloom.config import Settings, settings_for
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.connection import connect
from taskloom.dispatch.embedded import EmbeddedCluster
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import ConfigError, RunNotFoundError, TargetError, UserError
from taskloom.logs import get_logger
from taskloom.views.status import running_workers
from taskloom.workflows.checkpointer import open_checkpointer
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.review import reviewing
from taskloom.workflows.runner import OnEvent, new_run_id
from taskloom.workflows.runner import run as run_workflow
from taskloom.workflows.store import MirroredRunStore, RunStore, SqliteRunStore

log = get_logger(__name__)

__all__ = ["Cluster", "RunHandle", "Watcher", "observe", "run_many", "run_store"]

CLUSTER_OPTIONS = frozenset(
    {"redis_url", "model", "secret", "concurrency", "gpu", "n_gpu_layers", "n_ctx", "home"}
    | {"checkpointer", "max_attempts", "retry_backoff_s", "lease_s", "no_worker_timeout_s"}
)
"""Settings the cluster holds for every run (its workers, dispatcher and stores): given
to `Cluster(...)`, refused on one run."""


class Watcher(Protocol):
    """What shows a run as it goes (the CLI's progress line): events, and worker names."""

    def update(self, event: dict[str, Any], record: RunRecord) -> None: ...

    def watch(self, workers_of: Callable[[], dict[str, str]]) -> None: ...


@dataclass(frozen=True)
class RunHandle:
    """A run submitted to a Cluster: its id at once, its record once it finishes."""

    run_id: str
    _future: Future[RunRecord] = field(repr=False)
    _store: RunStore = field(repr=False)
    _target: str = field(default="", repr=False)

    def done(self) -> bool:
        """Whether the run has finished (or raised)."""
        return self._future.done()

    def wait(self, timeout_s: float | None = None) -> RunRecord:
        """The run's record once it finishes; after `timeout_s`, its latest one (status
        `running`, or `pending` while it waits for a free slot), as `taskloom.wait` does.

        Raises:
            UserError: the run's inputs don't fit its workflow.
            InfrastructureError: Redis or the workers went away.
        """
        try:
            return self._future.result(timeout=timeout_s)
        except FutureTimeoutError:
            try:
                return self._store.load(self.run_id)
            except RunNotFoundError:
                return RunRecord(run_id=self.run_id, target=self._target)


@dataclass(frozen=True)
class _Prepared:
    """A run ready to start: its workflow (loaded and checked), inputs and settings."""

    workflow: Workflow
    inputs: dict[str, Any]
    label: str
    settings: Settings
    specs: list[str]
    """The modules local workers import for its tools."""


class Cluster:
    """Workers that stay up for many runs; one start-up (and one model load a worker).

    Args:
        workers: local worker processes the embedded cluster starts.
        settings: the base settings; by default the environment's (`TASKLOOM_*`).
        tools: Python tools the steps may call.
        tool_modules: modules (or `file.py`) whose tools are registered, here and on
            local workers (`--tools`).
        is_inline: run steps in this process, without Redis.
        dispatcher: dispatch through this one instead of choosing from the settings.
        max_runs: runs in flight at once (default: `workers` × `concurrency`, enough
            to fill every worker's batch); more submitted runs wait for a slot.
        **options: any `Settings` field, e.g. `redis_url=`, `model=`, `concurrency=`.

    Leaving the `with` block waits for the submitted runs, then stops what the
    cluster started; leaving it with an exception cancels them first.

    Raises:
        ConfigError: an unknown option.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        settings: Settings | None = None,
        tools: ToolsArg = (),
        tool_modules: Iterable[str] = (),
        is_inline: bool = False,
        dispatcher: Dispatcher | None = None,
        max_runs: int | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings_for(settings, options)
        self.workers = max(1, workers)
        self.is_inline = is_inline
        self.modules = list(tool_modules)
        self.tools = registry(tools, self.modules)
        runs = max_runs or self.workers * self.settings.concurrency
        self._pool = ThreadPoolExecutor(max_workers=max(1, runs), thread_name_prefix="taskloom-run")
        self._given = dispatcher
        self._dispatcher: Dispatcher | None = None
        self._checkpointer: BaseCheckpointSaver[Any] | None = None
        self._store: RunStore | None = None
        self._embedded: EmbeddedCluster | None = None
        self._specs: list[str] = []
        self._is_closed = False
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._cancels: list[threading.Event] = []

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(is_cancelling=exc is not None)

    @property
    def worker_starts(self) -> int:
        """Local worker processes this cluster started, each loading the model once: 0
        before the first run, and with a configured Redis or inline."""
        return self._embedded.worker_starts if self._embedded is not None else 0

    def run(
        self,
        target: Target,
        inputs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        max_steps: int | None = None,
        on_event: OnEvent | None = None,
        watcher: Watcher | None = None,
        cancelled: threading.Event | None = None,
        **options: Any,
    ) -> RunRecord:
        """Run a workflow or plan to the end on this cluster and return its record.

        Args:
            target: a Workflow, a Plan, a plan file (`*.json`), or `file.py:name` /
                `module:name` naming a workflow.
            inputs: the run's inputs (a JSON object).
            run_id: use this id instead of a fresh one.
            max_steps: the step budget: steps executed, escalations included.
            on_event: called with each step event and the record so far.
            watcher: the same, for displays that also show which worker runs each step.
            cancelled: set it to stop the run (queued steps are dropped).
            **options: `Settings` fields for this run alone (budgets such as
                `max_cost_usd=`, `escalate_below=`, `review=`); the cluster's own
                (`model=`, `redis_url=`, `concurrency=`, …) go to `Cluster(...)`.

        Raises:
            UserError: a bad target, inputs or option (exit code 2).
            InfrastructureError: Redis or the workers are unavailable (exit code 3).
        """
        prepared = self._prepare(target, inputs, options)
        self._start(prepared)
        return self._run(prepared, run_id or new_run_id(), max_steps, on_event, watcher, cancelled)

    def submit(
        self,
        target: Target,
        inputs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        max_steps: int | None = None,
        on_event: OnEvent | None = None,
        cancelled: threading.Event | None = None,
        **options: Any,
    ) -> RunHandle:
        """Start a run and return at once; `handle.wait()` gives its record.

        The target and inputs are checked here, so a bad one raises now. Arguments as
        for `run`.
        """
        prepared = self._prepare(target, inputs, options)
        run_id = run_id or new_run_id()
        future = self._launch(prepared, run_id, max_steps, on_event, cancelled)
        return RunHandle(run_id, future, self._store_now(), prepared.label)

    def run_many(
        self,
        target: Target,
        inputs_list: Sequence[dict[str, Any]],
        *,
        max_steps: int | None = None,
        **options: Any,
    ) -> list[RunRecord]:
        """Run `target` once per inputs, all in flight together; records in input order.

        Every inputs is checked before any run starts. Arguments as for `run`.

        Raises:
            UserError: a bad target, or inputs that don't fit it (names which, from 1).
            InfrastructureError: Redis or the workers are unavailable.
        """
        prepared = []
        for n, inputs in enumerate(inputs_list, start=1):
            try:
                prepared.append(self._prepare(target, inputs, options))
            except UserError as e:
                e.message = f"inputs {n}: {e.message}"  # which of them, the same error
                raise
        futures = [self._launch(p, new_run_id(), max_steps, None, None) for p in prepared]
        return [f.result() for f in futures]

    def close(self, *, is_cancelling: bool = False) -> None:
        """Wait for the submitted runs (or, `is_cancelling`, cancel them), then stop what
        the cluster started."""
        if is_cancelling:
            with self._lock:
                for event in self._cancels:
                    event.set()
        with self._lock:
            self._is_closed = True
        try:
            self._pool.shutdown(wait=True, cancel_futures=is_cancelling)
        finally:  # a second Ctrl-C while runs wind down still stops the workers
            self._stack.close()
            self._dispatcher = None

    def _prepare(
        self, target: Target, inputs: dict[str, Any] | None, options: dict[str, Any]
    ) -> _Prepared:
        """Load and check the target for these inputs (nothing starts here)."""
        held = sorted(CLUSTER_OPTIONS & options.keys())
        if held:
            raise ConfigError(
                f"{held[0]}= is the cluster's setting, not one run's; pass it to Cluster(...)"
            )
        settings = settings_for(self.settings, options) if options else self.settings
        inputs = dict(inputs or {})
        workflow = resolve_target(target, settings=settings, inputs=inputs, tools=self.tools)
        workflow.check_inputs(inputs)
        label = (
            target if isinstance(target, str) else str(target) if isinstance(target, Path) else ""
        )
        specs = worker_modules(label, self.modules, workflow)
        return _Prepared(workflow, inputs, label, settings, specs)

    def _launch(
        self,
        prepared: _Prepared,
        run_id: str,
        max_steps: int | None,
        on_event: OnEvent | None,
        cancelled: threading.Event | None,
    ) -> Future[RunRecord]:
        """Start the cluster if it isn't, then the run on a thread of its own."""
        self._start(prepared)
        event = cancelled if cancelled is not None else threading.Event()
        with self._lock:
            self._cancels.append(event)
        go = partial(self._run, prepared, run_id, max_steps, on_event, None, event)
        future = self._pool.submit(go)
        future.add_done_callback(lambda _: self._forget(event))
        return future

    def _forget(self, event: threading.Event) -> None:
        """A finished run has nothing left to cancel."""
        with self._lock:
            self._cancels.remove(event)

    def _start(self, prepared: _Prepared) -> None:
        """Start what the settings call for, once; later runs' tools must be there too."""
        workflow, specs = prepared.workflow, prepared.specs
        with self._lock:
            if self._is_closed:
                raise UserError(
                    "this Cluster is closed; open another: with taskloom.Cluster() as c:"
                )
            if self._dispatcher is not None:
                self._share(workflow, specs)
                return
            if self.is_inline and self._given is None and needs_slm(workflow):
                check_local_model(self.settings)  # before the run starts, not in each step
            dispatcher = self._given
            if dispatcher is None:
                dispatcher = self._stack.enter_context(
                    connect(
                        self.settings,
                        is_inline=self.is_inline,
                        workers=self.workers,
                        tools=workflow.tools,
                        tool_specs=specs,
                    )
                )
            self._checkpointer = self._stack.enter_context(open_checkpointer(self.settings))
            self._store = run_store(self.settings, dispatcher)
            self._specs = specs
            self._dispatcher = dispatcher
            self._embedded = dispatcher.cluster if isinstance(dispatcher, RedisDispatcher) else None
            log.info("cluster_started", workers=self.worker_starts, tool_modules=specs)

    def _share(self, workflow: Workflow, specs: list[str]) -> None:
        """A later run's tools: inline, added to the shared registry; on local workers,
        only those they imported at the start."""
        d = self._dispatcher
        if isinstance(d, InlineDispatcher) and d.tools is not workflow.tools:
            d.tools.tools.update(workflow.tools.tools)
            d.tools.models.update(workflow.tools.models)
        missing = [s for s in specs if s not in self._specs]
        if missing and self.worker_starts:
            raise TargetError(
                f"this cluster's workers started without the tools of {missing[0]}; "
                f"pass tool_modules=[{missing[0]!r}] to Cluster(...)"
            )

    def _store_now(self) -> RunStore:
        assert self._store is not None  # _start set it before any run
        return self._store

    def _run(
        self,
        prepared: _Prepared,
        run_id: str,
        max_steps: int | None,
        on_event: OnEvent | None,
        watcher: Watcher | None,
        cancelled: threading.Event | None,
    ) -> RunRecord:
        dispatcher, store = self._dispatcher, self._store_now()
        assert dispatcher is not None  # set by _start; closed only after the runs
        settings = prepared.settings
        escalating = EscalatingDispatcher.for_target(dispatcher, settings, max_steps=max_steps)
        record = run_workflow(
            prepared.workflow,
            prepared.inputs,
            dispatcher=reviewing(escalating, dispatcher, settings),
            settings=settings,
            checkpointer=self._checkpointer,
            store=store,
            run_id=run_id,
            target=prepared.label or prepared.workflow.name,
            on_event=observe(on_event, watcher, dispatcher, run_id),
            cancelled=cancelled,
        )
        store.save(escalating.annotate(record))
        return record


def run_many(
    target: Target,
    inputs_list: Sequence[dict[str, Any]],
    *,
    settings: Settings | None = None,
    tools: ToolsArg = (),
    tool_modules: Iterable[str] = (),
    workers: int = 1,
    is_inline: bool = False,
    max_steps: int | None = None,
    **options: Any,
) -> list[RunRecord]:
    """Run `target` once per inputs on one cluster start-up; the records in input order.

    The runs are in flight together, so a batching worker decodes their steps in one
    batch. Arguments and errors as for `taskloom.run`; every inputs is checked before
    anything starts.
    """
    with Cluster(
        settings=settings,
        tools=tools,
        tool_modules=tool_modules,
        workers=workers,
        is_inline=is_inline,
        **options,
    ) as cluster:
        return cluster.run_many(target, inputs_list, max_steps=max_steps)


def run_store(settings: Settings, dispatcher: Dispatcher) -> RunStore:
    """Local runs keep their record here; over a configured Redis, there too (for
    `status` from any machine)."""
    store: RunStore = SqliteRunStore(settings.state_path)
    if settings.redis_url and isinstance(dispatcher, RedisDispatcher):
        return MirroredRunStore(store, RedisRunStore(dispatcher.broker))
    return store


def observe(
    on_event: OnEvent | None, watcher: Watcher | None, dispatcher: Dispatcher, run_id: str
) -> OnEvent | None:
    """One event callback for both; the watcher learns which worker runs each step."""
    if watcher is not None and isinstance(dispatcher, RedisDispatcher):
        watcher.watch(partial(running_workers, dispatcher.broker, run_id))
    if watcher is None:
        return on_event
    if on_event is None:
        return watcher.update

    def both(event: dict[str, Any], record: RunRecord) -> None:
        on_event(event, record)
        watcher.update(event, record)

    return both
