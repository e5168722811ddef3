"""A box's workers, assembled: the supervisor, its children's environment, its metrics.

`run_box` is what `taskloom worker --gpus LIST|all` or `--processes N` runs;
`serve_one` is what a single `taskloom worker` runs (a supervisor's child included).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from taskloom.chat import check_model, gpu
from taskloom.config import Settings, env_var
from taskloom.dispatch.broker import Broker
from taskloom.errors import ConfigError
from taskloom.workers.metrics import MetricsServer, WorkerMetrics
from taskloom.workers.serve import build_worker
from taskloom.workers.supervisor import ChildSpec, Supervisor, adopt, plan_children

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
NOT_PASSED = {"gpu", "metrics_port"}
"""Settings the supervisor keeps: each child is given its own GPU; the box has one port."""


def child_env(settings: Settings, *, metrics_dir: str) -> dict[str, str]:
    """The children's environment: ours, with every setting the supervisor was given."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"TASKLOOM_GPU", "TASKLOOM_METRICS_PORT"}
    }
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or name in NOT_PASSED:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, dict | tuple | list):
            value = json.dumps(value)
        env[env_var(name)] = str(value)
    env[MULTIPROC_DIR] = metrics_dir
    return env


def plan_box(
    settings: Settings, *, gpus: str | None, processes: int, box: str | None
) -> list[ChildSpec]:
    """The workers a box's supervisor keeps alive, checked before anything starts.

    Args:
        settings: the workers' settings.
        gpus: `--gpus`: indexes such as `0,1`, or `all`; None on a CPU box.
        processes: workers per GPU (per box, on the CPU).
        box: the box's name in the workers' names (default: the host name).

    Raises:
        ConfigError: `--processes` below 1, a bad or unknown GPU, a GPU on a CPU-only
            build, or `--gpus` with `--gpu`.
        ModelFileError: the model file won't load.
    """
    if processes < 1:
        raise ConfigError(f"--processes {processes}: a box needs at least 1 worker process")
    if gpus is not None and settings.gpu is not None:
        raise ConfigError("pass --gpus (one worker per GPU) or --gpu, not both")
    placed = gpu.resolve_gpus(gpus) if gpus is not None else None
    gpu.check_settings(settings)
    check_model(settings)
    return plan_children(box or socket.gethostname(), gpus=placed, processes=processes)


def run_box(children: list[ChildSpec], *, settings: Settings, worker_args: list[str]) -> int:
    """Supervise this box's workers until they are drained or stopped; the exit status.

    Args:
        children: from `plan_box`.
        settings: the workers' settings (passed to each child through its environment).
        worker_args: the `taskloom worker` arguments each child gets (queues, tools, …).

    Raises:
        ConfigError: the metrics port is in use.
    """
    metrics_dir = tempfile.mkdtemp(prefix="taskloom-metrics-")
    server: MetricsServer | None = None
    try:
        from prometheus_client import multiprocess

        supervisor = Supervisor(
            children,
            command=[sys.executable, "-m", "taskloom.cli", "worker", *worker_args],
            settings=settings,
            env=child_env(settings, metrics_dir=metrics_dir),
            on_exit=lambda pid: multiprocess.mark_process_dead(pid, metrics_dir),  # type: ignore[no-untyped-call]
        )
        if settings.metrics_port:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
            server = MetricsServer(
                settings.metrics_port, collect=registry, health=supervisor.health
            )
            server.start()
        return supervisor.run()
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve_one(
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
    child: str | None = None,
) -> str:
    """Run one worker in this process until it stops; why it stopped.

    Args:
        child: `SUPERVISOR_PID:GPU:INDEX`, given by a supervisor to its children.

    Returns:
        "recycled" (it ran `max_jobs` jobs), "drained" (`taskloom drain`) or "stopped".
    """
    slot: dict[str, Any] | None = None
    if child is not None:
        supervisor_pid, gpu_index, index = child.split(":")
        adopt(int(supervisor_pid))
        parent_pid = int(supervisor_pid)
        box = (name or "").rsplit(".", 2)[0]
        slot = {"box": box, "gpu": gpu_index, "index": index}
    registry = CollectorRegistry()
    metrics: WorkerMetrics | None = None
    server: MetricsServer | None = None
    if child is not None and os.environ.get(MULTIPROC_DIR):
        metrics = WorkerMetrics(registry)  # to the supervisor's folder; it serves them
    elif settings.metrics_port:
        metrics = WorkerMetrics(registry)
        holder: list[Any] = []
        server = MetricsServer(
            settings.metrics_port,
            collect=registry,
            health=lambda: (bool(holder) and not holder[0].is_stopping, {}),
        )
    worker = build_worker(
        broker,
        settings=settings,
        queues=queues,
        tool_specs=tool_specs,
        name=name,
        concurrency=concurrency,
        is_burst=is_burst,
        parent_pid=parent_pid,
        max_jobs=max_jobs,
        metrics=metrics,
        slot=slot,
    )
    try:
        if server is not None:
            holder.append(worker)
            server.start()
        worker.work()
    finally:
        if server is not None:
            server.close()
    if worker.is_recycled:
        return "recycled"
    return "drained" if worker.is_drained else "stopped"
