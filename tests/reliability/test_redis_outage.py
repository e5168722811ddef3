"""Redis stops in the middle of a run: a clear one-line error and exit code 3, then resume.

The test server runs with its append-only file on (`appendfsync always`), so every
result written before the outage is there after the restart, and `taskloom resume`
finishes the run without running a finished step again.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RedisServer
from tests.reliability.chaos import coordinator, merges, process, work_step, write_plan
from tests.workers.redis_helpers import Spawn, counts, taskloom, wait_for


def test_redis_going_away_exits_3_and_the_run_resumes_after_restart(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, spawn_worker: Spawn
) -> None:
    ids = [f"c{i}" for i in range(8)]
    steps = [
        work_step(s, redis_url, sleep_s=0.3, after=[ids[i - 1]] if i else None)
        for i, s in enumerate(ids)
    ]
    path = write_plan(tmp_path / "plan.json", {"version": 1, "steps": steps, "output": "$c7.value"})
    spawn_worker()
    cmd = coordinator("run", str(path), "--redis-url", redis_url, "--run-id", "outage")
    try:
        with process(cmd) as run:
            wait_for(lambda: len(counts(redis_url, "test:executed")) >= 3, what="three steps")
            finished_before = counts(redis_url, "test:executed")
            redis_server.stop()
            _, err = run.output(timeout_s=60)
        assert run.returncode == 3, err
        errors = [line for line in err.splitlines() if line.startswith("taskloom: error:")]
        assert len(errors) == 1 and "Traceback" not in err, err
        assert "Redis" in errors[0] and "taskloom resume outage" in errors[0]
    finally:
        redis_server.start()

    resumed = taskloom("resume", "outage", "--redis-url", redis_url, "--json", timeout_s=90)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done" and record["output"] == 2
    executed = counts(redis_url, "test:executed")
    assert set(executed) == set(ids)
    for step in finished_before:
        assert executed[step] == 1, f"finished step {step} ran again"
    assert merges(redis_url, "outage") == dict.fromkeys(ids, 1)
