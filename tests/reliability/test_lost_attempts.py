"""A step whose worker was SIGKILLed counts the lost attempt, and says why it ran again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.reliability.chaos import coordinator, process, work_step, write_plan
from tests.workers.redis_helpers import Spawn, counts, taskloom, wait_for


def test_a_lost_attempt_counts_and_the_record_says_why(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = {"version": 1, "steps": [work_step("slow", redis_url, sleep_s=1.5)], "output": 1}
    path = write_plan(tmp_path / "plan.json", plan)
    doomed = spawn_worker()
    cmd = coordinator("run", str(path), "--redis-url", redis_url, "--run-id", "lost", "--json")
    with process(cmd) as run:
        wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=5)
        spawn_worker()  # its heartbeat finds the lease expired and queues the step again
        out, err = run.output(timeout_s=60)
    assert run.returncode == 0, err
    (step,) = json.loads(out)["steps"]
    assert counts(redis_url, "test:started") == {"slow": 2}
    assert step["attempts"] == 2
    (why,) = step["retried"]
    assert why.startswith("worker ") and f".{doomed.pid}." in why
    assert "lost it (its lease expired) at " in why
    status = taskloom("status", "lost", "--redis-url", redis_url)
    row = next(ln for ln in status.stdout.splitlines() if ln.startswith("slow"))
    assert row.split()[2:4] == ["done", "2"]
