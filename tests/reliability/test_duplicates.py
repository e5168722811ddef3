"""Duplicates while a step runs: the step runs once, counted outside Redis.

Executions are counted from a log file the test tools append to, and merges from the
run records, so neither count is the mechanism counting itself.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import redis

from taskloom.config import Settings, key
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepResult, StepStatus
from tests.reliability.chaos import drive, process, write_plan
from tests.workers.redis_helpers import Spawn, executions, wait_for


def logged_job(run_id: str, step_id: str, log: Path, *, sleep_s: float) -> StepJob:
    inputs = {"log": str(log), "name": step_id, "sleep_s": sleep_s, "value": 3}
    return StepJob(run_id=run_id, step_id=step_id, kind="tool", tool="logged", inputs=inputs)


def test_a_step_enqueued_again_while_it_runs_runs_once(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    spawn_worker()
    spawn_worker()  # an idle worker, free to run a second copy at once
    job = logged_job("r1", "slow", log, sleep_s=1.5)
    results: list[StepResult] = []

    def coordinate() -> None:
        d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
        results.append(d.dispatch(job))
        d.close()

    first = threading.Thread(target=coordinate)
    first.start()
    wait_for(lambda: executions(log) == {"slow": 1}, what="the first job to start")
    second = threading.Thread(target=coordinate)  # a second coordinator, same step
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    assert [r.status for r in results] == [StepStatus.DONE, StepStatus.DONE]
    assert [r.value for r in results] == [{"value": 3}, {"value": 3}]
    assert executions(log) == {"slow": 1} and executions(log, "end") == {"slow": 1}


def test_the_same_job_delivered_again_while_it_runs_runs_once(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    broker = Broker(redis_url, settings=Settings())
    spawn_worker()
    spawn_worker()  # whichever is idle takes the duplicate delivery at once
    job = logged_job("r2", "dup", log, sleep_s=2.0)
    data = payload.encode("step", job.model_dump(mode="json"), max_attempts=1, secret=None)
    job_id, _, _, _ = broker.enqueue(
        queue="slm", data=data, run_id="r2", step_id="dup", description="d"
    )
    wait_for(lambda: executions(log) == {"dup": 1}, what="the job to start")
    r = redis.Redis.from_url(redis_url)
    r.rpush("rq:queue:slm", job_id)  # the same job id delivered again, mid-run
    r.rpush(key("wake", "slm"), "1")
    wait_for(lambda: r.llen("rq:queue:slm") == 0, what="the duplicate to be taken")
    assert not r.exists(key("result", "r2", "dup"))  # it was taken while the first ran
    wait_for(lambda: r.exists(key("result", "r2", "dup")), what="the result")
    time.sleep(0.5)  # a second run, had it started, would have logged by now
    assert executions(log) == {"dup": 1}


def test_two_coordinators_of_one_run_run_each_step_once(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    """The same run started twice at once (a retried submit, an operator's mistake)."""
    log = tmp_path / "executions.log"
    ids = [f"s{i}" for i in range(8)]
    steps: list[dict[str, Any]] = [
        {
            "id": s,
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": s, "sleep_s": 0.3, "value": i},
        }
        for i, s in enumerate(ids)
    ]
    plan = write_plan(
        tmp_path / "plan.json",
        {"version": 1, "steps": steps, "output": [f"${s}.value" for s in ids]},
    )
    for _ in range(3):
        spawn_worker()
    with (
        process(drive(plan, redis_url, "twice")) as a,
        process(drive(plan, redis_url, "twice")) as b,
    ):
        outputs = [p.output(timeout_s=60) for p in (a, b)]
    records = [json.loads(out.splitlines()[-1])["record"] for out, _ in outputs]
    for record, (_, err) in zip(records, outputs, strict=True):
        assert record["status"] == "done", err
        assert record["output"] == list(range(8))
        merged = [s["id"] for s in record["steps"] if s["status"] == "done"]
        assert sorted(merged) == sorted(ids)  # each step merged once into each record
    assert executions(log) == dict.fromkeys(ids, 1)
