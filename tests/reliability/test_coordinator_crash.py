"""The coordinator dies in the middle of a fan-out; `taskloom resume` finishes the run.

Finished steps keep their results in Redis (keyed by run and step), so the resumed
run takes them from there: no finished step runs again. Counted per step in Redis.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.reliability.chaos import (
    coordinator,
    expected_output,
    fan_plan,
    merges,
    process,
    write_plan,
)
from tests.workers.redis_helpers import Spawn, counts, taskloom, wait_for


def test_a_killed_coordinator_resumes_without_rerunning_finished_steps(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = fan_plan(24, redis_url, sleep_s=0.15, prefix="fan")
    plan["steps"].append(
        {
            "id": "join",
            "kind": "tool",
            "tool": "noop",
            "inputs": {"x": 1},
            "after": [s["id"] for s in plan["steps"]],
        }
    )
    plan["output"] = {"fan": plan["output"], "join": "$join.x"}
    path = write_plan(tmp_path / "plan.json", plan)
    spawn_worker()
    spawn_worker()
    cmd = coordinator("run", str(path), "--redis-url", redis_url, "--run-id", "fanout")
    with process(cmd) as run:
        wait_for(lambda: sum(counts(redis_url, "test:executed").values()) >= 6, what="the fan-out")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=5)
    finished_before = counts(redis_url, "test:executed")
    fan_ids = [s["id"] for s in plan["steps"] if s["id"] != "join"]
    assert 6 <= len(finished_before) < len(fan_ids)  # killed in the middle

    resumed = taskloom("resume", "fanout", "--redis-url", redis_url, "--json", timeout_s=90)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done"
    assert record["output"] == {"fan": expected_output({"steps": plan["steps"][:-1]}), "join": 1}
    executed = counts(redis_url, "test:executed")
    assert set(executed) == set(fan_ids)
    for step in finished_before:
        assert executed[step] == 1, f"finished step {step} ran again"
    assert merges(redis_url, "fanout") == dict.fromkeys([*fan_ids, "join"], 1)
