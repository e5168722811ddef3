"""Resume after a step failure: only the failed step and what waited on it run again.

Executions are counted from a file the tools append to; merges from the run records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.workers.redis_helpers import Spawn, executions, taskloom


def test_resume_after_a_step_failure_reruns_only_what_did_not_finish(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log, flag = tmp_path / "executions.log", tmp_path / "broken"
    flag.touch()
    steps: list[dict[str, Any]] = [
        {
            "id": "good",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": "good"},
        },
        {
            "id": "flaky",
            "kind": "tool",
            "tool": "fails_while",
            "inputs": {"log": str(log), "name": "flaky", "flag": str(flag)},
        },
        {
            "id": "after",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": "after", "value": "$flaky.value"},
        },
    ]
    plan = tmp_path / "plan.json"
    output = {"good": "$good.value", "after": "$after.value"}
    plan.write_text(json.dumps({"version": 1, "steps": steps, "output": output}))
    spawn_worker()
    args = ("--redis-url", redis_url, "--run-id", "flaky1", "--json")
    env = {"TASKLOOM_MAX_ATTEMPTS": "2", "TASKLOOM_RETRY_BACKOFF_S": "0.05"}
    failed = taskloom("run", str(plan), *args, env=env)
    assert failed.returncode == 1, failed.stderr
    first = {s["id"]: s for s in json.loads(failed.stdout)["steps"]}
    assert first["good"]["status"] == "done" and first["flaky"]["status"] == "failed"
    assert executions(log) == {"good": 1, "flaky": 2}
    flag.unlink()  # the cause is fixed
    resumed = taskloom("resume", "flaky1", "--redis-url", redis_url, "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done" and record["output"] == {"good": 0, "after": 1}
    assert executions(log) == {"good": 1, "flaky": 3, "after": 1}  # good did not run again
    done = [s["id"] for s in record["steps"] if s["status"] == "done"]
    assert sorted(done) == ["after", "flaky", "good"]  # each merged once into the record
