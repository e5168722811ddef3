"""What a worker says about itself: a ready line at default verbosity, and its start-up
drawn apart from queue wait in the record and the HTML timeline."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from taskloom.views.html import render_html
from taskloom.workflows.record import parse_record
from tests.workers.redis_helpers import TOOLS, Spawn, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]


def ready_line(proc: object) -> str:
    """The worker's first stderr line that says it is ready."""
    stderr = proc.stderr  # type: ignore[attr-defined]
    for _ in range(50):
        line = stderr.readline().decode()
        if "worker_ready" in line:
            return str(line)
    raise AssertionError("the worker never said it was ready")


def test_workers_log_one_ready_line_at_default_verbosity(spawn_worker: Spawn) -> None:
    line = ready_line(spawn_worker("--concurrency", "2"))
    assert "[info" in line
    for part in ("model=scripted", "queues=slm", "concurrency=2", "device=-", f"tools={TOOLS}"):
        assert part in line, line
    runs = ready_line(spawn_worker("--queue", "runs"))
    assert "queues=runs" in runs and "model=-" in runs and "concurrency=8" in runs


def test_a_worker_starting_up_is_not_drawn_as_queue_wait(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    def step(step_id: str, **extra: object) -> dict[str, object]:
        inputs = {"url": redis_url, "name": step_id, "value": 1}
        return {"id": step_id, "kind": "tool", "tool": "work", "inputs": inputs, **extra}

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "steps": [step("a"), step("b", after=["a"])]}))
    spawn_worker("--queue", "runs")
    args = ("--redis-url", redis_url)
    run_id = taskloom("submit", str(plan), *args).stdout.strip()
    r = redis.Redis.from_url(redis_url)
    wait_for(lambda: r.llen("rq:queue:slm") == 1, what="step a to wait for a worker")
    spawn_worker()  # a is taken by a worker that started after it was queued; b is not
    got = taskloom("result", run_id, "--wait", "--timeout", "30", "--json", *args)
    assert got.returncode == 0, got.stderr
    record = parse_record(got.stdout)
    a, b = record.steps
    assert a.startup_ms > 0 and b.startup_ms == 0
    assert record.totals.startup_ms == a.startup_ms
    page = render_html(record)
    assert page.count('class="startup"') == 1 and "its worker starting" in page
