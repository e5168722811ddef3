"""Building the worker that `taskloom worker` runs: its queues, model and handlers."""

from __future__ import annotations

from typing import Any

from taskloom.chat import gpu, load_model
from taskloom.config import DEFAULT_QUEUE, QUEUE_NAME, RUNS_QUEUE, Settings
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Broker
from taskloom.errors import ConfigError
from taskloom.workers.coordinator import run_handler
from taskloom.workers.handlers import Handler, step_handler
from taskloom.workers.metrics import WorkerMetrics
from taskloom.workers.worker import Worker, worker_name
from taskloom.workflows.target import collect

RUNS_CONCURRENCY = 8
"""Runs one `runs` worker coordinates at once (each mostly waits on its steps)."""


def build_worker(
    broker: Broker,
    *,
    settings: Settings,
    queues: list[str],
    tool_specs: list[str],
    name: str | None = None,
    concurrency: int | None = None,
    is_burst: bool = False,
    parent_pid: int | None = None,
    max_jobs: int | None = None,
    metrics: WorkerMetrics | None = None,
    slot: dict[str, Any] | None = None,
) -> Worker:
    """A worker: a resident model for SLM queues, or coordinators for `runs`.

    With no queues it serves `slm` and `slm:<model>`. The model loads here, once,
    before the worker takes any job. An SLM worker runs `concurrency` steps at once
    (default: `settings.concurrency` on a GGUF model, whose host batches them; 1 on
    the scripted fake). `slot` is where a supervisor put it (box, gpu, index, pid):
    shown by `taskloom workers`, and a stuck step then exits 75 for the supervisor.

    Raises:
        ConfigError: a bad queue name, `runs` mixed with SLM queues, or a GPU asked
            for on a llama.cpp build without GPU offload.
        ModelFileError: the model can't be loaded.
    """
    names = [payload.check_queue(q) for q in queues]
    is_runs = RUNS_QUEUE in names
    if is_runs and len(set(names)) > 1:
        raise ConfigError(
            "--queue runs can't be mixed with SLM queues: a coordinator would block the "
            "model; start a separate worker for each"
        )
    gpu.check_settings(settings)
    tools, workflows = collect(tool_specs)
    name = name or worker_name()
    handlers: dict[str, Handler] = {}
    # What it loaded, so that `submit` can tell whether any coordinator can run a workflow.
    info: dict[str, Any] = {"model": "-", "gpu": "-", "tools": ",".join(tool_specs), **(slot or {})}
    if is_runs:
        info["workflows"] = ",".join(sorted(workflows))
        handlers["run"] = run_handler(
            broker,
            settings=settings,
            tools=tools,
            workflows=workflows,
            worker=name,
            metrics=metrics,
        )
    else:
        chat = load_model(
            settings.model_copy(update={"concurrency": concurrency or settings.concurrency})
        )
        # As many steps at once as the model decodes at once (the scripted fake: one).
        concurrency = concurrency or getattr(chat, "concurrency", 1)
        handlers["step"] = step_handler(model=chat, tools=tools, settings=settings, worker=name)
        if metrics is not None:
            handlers["step"] = metrics.observe(handlers["step"], model=chat.name)
            metrics.model_loaded(chat.name, getattr(chat, "load_s", 0.0))
        info["model"] = chat.name
        info["load_s"] = round(getattr(chat, "load_s", 0.0), 3)
        # Where llama.cpp put the model, as it reported after loading (not the flags).
        info |= getattr(chat, "placement", {"device": "-", "gpu_layers": "-"})
        if not names:
            names = [DEFAULT_QUEUE]
            by_model = f"{DEFAULT_QUEUE}:{payload.model_tag(chat.name)}"
            if QUEUE_NAME.match(by_model):
                names.append(by_model)
    worker = Worker(
        broker,
        queues=names,
        handlers=handlers,
        settings=settings,
        name=name,
        info=info,
        concurrency=concurrency or (RUNS_CONCURRENCY if is_runs else 1),
        is_burst=is_burst,
        parent_pid=parent_pid,
        is_restart_by_exec=slot is None,
        max_jobs=max_jobs,
    )
    worker.metrics = metrics
    if not is_runs:  # the adapters its model host has loaded, for `taskloom workers`
        worker.loaded_adapters = lambda: list(getattr(chat, "adapters", []))
    return worker
