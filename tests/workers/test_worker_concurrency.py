"""A worker holding several jobs at once (`--concurrency N`): leases, kills and drains.

Real worker processes against the real test server; the steps are Python tools that
log each execution to a file (outside Redis), so a re-run can't hide in Redis state.
"""

from __future__ import annotations

import collections
import signal
import threading
from pathlib import Path
from typing import Any

import redis

from taskloom import Plan, Settings, run
from taskloom.config import key
from taskloom.dispatch.broker import Broker
from taskloom.step import StepStatus
from tests.workers.redis_helpers import Spawn, counts, spawn_worker, wait_for

__all__ = ["spawn_worker"]

TOOLS = str(Path(__file__).parent / "batch_tools.py")
N = 4


def plan(n: int, sleep_s: float) -> Plan:
    steps = [
        {
            "id": f"s{i}",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": "$input.log", "name": f"s{i}", "sleep_s": sleep_s},
        }
        for i in range(n)
    ]
    return Plan.model_validate({"version": 1, "steps": steps, "output": "$s0.name"})


def log_counts(log: Path, what: str) -> collections.Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return collections.Counter(ln.split()[1] for ln in lines if ln.startswith(what + " "))


def run_in_thread(
    url: str, log: Path, n: int, sleep_s: float
) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    settings = Settings(redis_url=url, lease_s=1.0)
    t = threading.Thread(
        target=lambda: out.append(run(plan(n, sleep_s), {"log": str(log)}, settings=settings))
    )
    t.start()
    return t, out


def test_a_worker_killed_holding_n_leases_has_each_job_requeued_and_merged_once(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    victim = spawn_worker("--concurrency", str(N), "--tools", TOOLS)
    t, out = run_in_thread(redis_url, log, N, 3.0)
    wait_for(lambda: len(log_counts(log, "start")) == N, what=f"{N} steps to start at once")
    leased = redis.Redis.from_url(redis_url).zcard(key("leases"))
    assert leased == N  # one worker holds all of them, each under its own lease
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=5)
    spawn_worker("--concurrency", str(N), "--tools", TOOLS)
    t.join(timeout=60)
    record = out[0]
    assert record.status == "done"
    steps = [s.id for s in record.steps]
    assert sorted(steps) == [f"s{i}" for i in range(N)]  # each merged once into the record
    assert all(s.status == StepStatus.DONE for s in record.steps)
    assert counts(redis_url, key("merges", record.run_id)) == dict.fromkeys(steps, 1)
    assert log_counts(log, "start") == dict.fromkeys(steps, 2)  # killed once, then re-run
    assert log_counts(log, "end") == dict.fromkeys(steps, 1)


def test_sigterm_drains_every_running_step_and_workers_shows_busy_sequences(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    worker = spawn_worker("--concurrency", str(N), "--tools", TOOLS)
    t, out = run_in_thread(redis_url, log, N, 1.5)
    wait_for(lambda: len(log_counts(log, "start")) == N, what=f"{N} steps to start at once")
    broker = Broker(redis_url, settings=Settings())
    wait_for(
        lambda: [w for w in broker.live_workers() if w.get("sequences") == f"{N}/{N}"],
        what="the heartbeat to report every sequence busy",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0  # it finished all of them, then exited
    t.join(timeout=30)
    assert out and out[0].status == "done"
    assert log_counts(log, "end") == {f"s{i}": 1 for i in range(N)}
    assert log_counts(log, "start") == {f"s{i}": 1 for i in range(N)}  # none re-queued
