"""Plain-text tables for `taskloom status` and `taskloom workers`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskloom.config import key
from taskloom.dispatch.broker import RUN_STEP, Broker
from taskloom.step import StepStatus
from taskloom.workflows.record import RunRecord
from taskloom.workflows.redis_store import RedisRunStore


@dataclass
class RunView:
    """What `taskloom status` shows: the record, each step's job state, dead letters.

    A local run has no jobs and no dead letters: its record is all there is.
    """

    record: RunRecord
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)


def view(broker: Broker, run_id: str) -> RunView:
    """The record of a run with the live state of its jobs.

    Raises:
        RunNotFoundError: Redis has no such run.
    """
    record = RedisRunStore(broker).load(run_id)
    with broker.reachable(), broker.redis.pipeline() as p:
        p.hgetall(key("jobs", run_id))
        p.hgetall(key("dead", run_id))
        job_ids, dead = p.execute()
    jobs = _job_fields(broker, job_ids, ("status", "worker_name", "deliveries", "origin"))
    return RunView(
        record=record,
        jobs=dict(sorted(jobs.items())),
        dead={k.decode(): json.loads(v) for k, v in dead.items()},
    )


def running_workers(broker: Broker, run_id: str) -> dict[str, str]:
    """{step id: worker name} for a run's steps that a worker is running now."""
    job_ids: Any = broker.call(lambda: broker.redis.hgetall(key("jobs", run_id)))
    jobs = _job_fields(broker, job_ids, ("status", "worker_name"))
    return {
        step: job["worker_name"]
        for step, job in jobs.items()
        if step != RUN_STEP and job["status"] == "started" and job["worker_name"]
    }


def _job_fields(
    broker: Broker, job_ids: dict[bytes, bytes], fields: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """{step id: {field: value}} read from each step's RQ job hash, in one round trip."""
    steps = [(bytes(k).decode(), bytes(v).decode()) for k, v in job_ids.items()]
    with broker.reachable(), broker.redis.pipeline() as p:
        for _, job_id in steps:
            p.hmget(f"rq:job:{job_id}", fields)
        rows = p.execute()
    return {
        step: {
            f: (v.decode() if isinstance(v, bytes) else str(v or ""))
            for f, v in zip(fields, row, strict=True)
        }
        for (step, _), row in zip(steps, rows, strict=True)
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def age_s(rq_timestamp: str) -> float | None:
    """Seconds since an RQ timestamp (`2026-01-01T00:00:00.000000Z`)."""
    try:
        moment = datetime.strptime(rq_timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, time.time() - moment.timestamp())


def format_status(view: RunView) -> str:
    """One line for the run, a row per step, then the dead letters."""
    record = view.record
    done = sum(s.status == StepStatus.DONE for s in record.steps)
    ids = [s.id for s in record.steps]
    ids += [s for s in sorted(view.jobs) if s not in ids and s != RUN_STEP]
    total = len(record.plan["steps"]) if record.plan else len(ids)
    seconds = (record.finished_at or time.time()) - record.created_at
    head = (
        f"run {record.run_id} {record.status.value}: {done}/{total} steps done, "
        f"{seconds:.1f}s, target {record.target or '-'}"
    )
    rows = []
    for step_id in ids:
        job = view.jobs.get(step_id, {})
        step = next((s for s in record.steps if s.id == step_id), None)
        if step is not None and step.status.is_final:
            status, worker = step.status.value, step.worker
            attempts, run_ms = str(step.attempts), f"{step.run_ms:.1f}"
        else:
            status = job.get("status") or (step.status.value if step else "pending")
            worker, attempts, run_ms = job.get("worker_name", ""), "-", "-"
        rows.append([step_id, step.kind if step else "", status, attempts, worker or "-", run_ms])
    out = [head]
    if rows:
        out.append(table(["STEP", "KIND", "STATUS", "ATTEMPTS", "WORKER", "RUN_MS"], rows))
    if record.error:
        out.append(f"error: {record.error.message}")
    if view.dead:
        out.append("dead letters:")
        out += [
            f"  {step_id}: {d.get('type', 'error')}: {d.get('message', '')}"
            for step_id, d in sorted(view.dead.items())
        ]
    return "\n".join(out)


WORKER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("WORKER", "the worker's name (host.pid.suffix unless given)"),
    ("MODEL", "the GGUF model it keeps loaded (- for a `runs` worker, which loads none)"),
    ("ADAPTERS", "the LoRA adapter files it has loaded for steps that asked (- for none)"),
    ("GPU", "the GPU it was given (--gpu), or - for none"),
    (
        "DEVICE",
        "where llama.cpp put the model: device, layers offloaded/total, memory used; "
        "`CPU 0/19` means 0 of the model's 19 layers are on a GPU, so it runs on the CPU",
    ),
    ("QUEUES", "the queues it takes steps from"),
    ("STATE", "busy while it runs a step, else idle"),
    ("SEQS", "sequences decoding now / the most it batches together"),
    ("STEP", "the run/step it is working on (+N: N more in the same batch)"),
    ("JOBS", "steps finished, successful or failed, since it started"),
    ("MEAN", "mean time per finished step"),
    (
        "HEARTBEAT",
        "time since it last reported; STALE past the lease: its steps will be queued again",
    ),
)
"""The columns of `taskloom workers`, each with what it shows (also its --help)."""


def workers_help() -> str:
    """`taskloom workers --help`: the command, then one line per column."""
    width = max(len(name) for name, _ in WORKER_COLUMNS)
    lines = [f"  {name.ljust(width)}  {meaning}" for name, meaning in WORKER_COLUMNS]
    return "List live workers, one row each.\n\n\b\nColumns:\n" + "\n".join(lines)


def format_workers(workers: list[dict[str, str]], *, lease_s: float) -> str:
    """A row per live worker: model, GPU, device (as llama.cpp placed the model), queues,
    busy/total sequences, current steps, jobs, mean step time, heartbeat.

    A worker whose heartbeat is older than the lease is marked stale: its jobs are about
    to be queued again.
    """
    if not workers:
        return "no live workers; start one with: taskloom worker"
    rows = []
    for w in workers:
        age = age_s(w.get("last_heartbeat", ""))
        jobs = int(w.get("successful_job_count") or 0) + int(w.get("failed_job_count") or 0)
        working_s = float(w.get("total_working_time") or 0)
        mean = f"{working_s / jobs * 1000:.0f}ms" if jobs else "-"
        heartbeat = "-" if age is None else f"{age:.1f}s ago"
        if age is not None and age > lease_s:
            heartbeat += " STALE"
        steps = [s for s in (w.get("current_step") or "").split(",") if s]
        step = "-" if not steps else steps[0] + (f" +{len(steps) - 1}" if len(steps) > 1 else "")
        rows.append(
            [
                w["name"],
                w.get("model", "-") or "-",
                w.get("adapters", "-") or "-",
                w.get("gpu", "-") or "-",
                _device(w),
                w.get("queues", ""),
                w.get("state", "?"),
                w.get("sequences", "-") or "-",
                step,
                str(jobs),
                mean,
                heartbeat,
            ]
        )
    header = [name for name, _ in WORKER_COLUMNS]
    return table(header, rows)


def _device(worker: dict[str, str]) -> str:
    """Where llama.cpp put the model: `CUDA0 19/19 240MiB`, `CPU 0/19`, or `-`."""
    device = worker.get("device") or "-"
    if device == "-":
        return device
    vram = float(worker.get("vram_mb") or 0)
    layers = worker.get("gpu_layers") or ""
    return " ".join(p for p in (device, layers, f"{vram:.0f}MiB" if vram else "") if p)


def goal_summary(record: RunRecord) -> dict[str, Any]:
    """The goal-specific part of a record, for the CLI's summary line."""
    spent = (record.budget or {}).get("spent", {})
    return {
        "route": (record.route or {}).get("target", "llm"),
        "planner": (record.planner or {}).get("name", "llm"),
        "rounds": len(record.rounds),
        "escalations": len(record.escalations),
        "cost_usd": spent.get("cost_usd", record.totals.cost_usd),
        "llm_calls": spent.get("llm_calls", 0),
        "stopped": (record.budget or {}).get("stopped"),
    }
