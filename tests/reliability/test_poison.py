"""A poison step (it always raises) is dead-lettered; the other branches finish."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from taskloom.config import key
from tests.reliability.chaos import fan_plan, merges, write_plan
from tests.workers.redis_helpers import Spawn, counts, taskloom


def test_a_poison_step_is_dead_lettered_and_finished_results_are_kept(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = fan_plan(6, redis_url, sleep_s=0.05, prefix="ok")
    plan["steps"] += [
        {
            "id": "poison",
            "kind": "tool",
            "tool": "broken",
            "inputs": {"url": redis_url, "name": "poison"},
        },
        {"id": "after_poison", "kind": "tool", "tool": "noop", "inputs": {"x": "$poison.value"}},
    ]
    plan["output"] = {"ok": plan["output"], "after": "$after_poison.x"}
    path = write_plan(tmp_path / "plan.json", plan)
    env = {"TASKLOOM_MAX_ATTEMPTS": "3"}
    spawn_worker("--queue", "runs", env=env)  # the coordinator of submitted runs
    spawn_worker()
    spawn_worker()
    args = ("--redis-url", redis_url)
    submitted = taskloom("submit", str(path), "--run-id", "poisoned", *args)
    assert submitted.returncode == 0, submitted.stderr
    got = taskloom("result", "poisoned", "--wait", "--timeout", "60", "--json", *args)
    assert got.returncode == 1, got.stderr  # a partial failure: the run failed
    errors = [line for line in got.stderr.splitlines() if line.startswith("taskloom: error:")]
    assert len(errors) <= 1 and "Traceback" not in got.stderr
    out = got.stdout
    record = json.loads(out)
    assert record["status"] == "failed"
    steps = {s["id"]: s for s in record["steps"]}
    assert steps["poison"]["status"] == "failed" and steps["poison"]["attempts"] == 3
    assert counts(redis_url, "test:executed")["poison"] == 3  # N attempts, then no more
    for i in range(6):  # every finished branch is kept, in the record and in Redis
        assert steps[f"ok{i}"]["status"] == "done"
    assert steps.get("after_poison", {}).get("status", "skipped") == "skipped"
    r = redis.Redis.from_url(redis_url)
    dead = json.loads(r.hget(key("dead", "poisoned"), "poison") or b"{}")
    assert dead["type"] == "RuntimeError" and "hiccuped" in dead["message"]
    assert all(r.exists(key("result", "poisoned", f"ok{i}")) for i in range(6))
    assert merges(redis_url, "poisoned") == {**{f"ok{i}": 1 for i in range(6)}, "poison": 1}
    status = taskloom("status", "poisoned", "--redis-url", redis_url)
    assert status.returncode == 0, status.stderr
    assert "poison" in status.stdout and "hiccuped" in status.stdout, status.stdout
