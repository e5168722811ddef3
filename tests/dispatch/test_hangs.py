"""No silent hangs: a job that leaves its queue without a result, or a queue no live
worker serves, is noticed; a plain `rq worker` on our queue is named as the cause."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from taskloom.config import Settings, key
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepResult, StepStatus
from tests.workers.redis_helpers import Spawn, executions, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]


def logged_job(step_id: str, log: Path) -> StepJob:
    inputs = {"log": str(log), "name": step_id, "value": 4}
    return StepJob(run_id="r", step_id=step_id, kind="tool", tool="logged", inputs=inputs)


def dispatcher(url: str, **settings: object) -> RedisDispatcher:
    return RedisDispatcher(url=url, settings=Settings(redis_url=url, lease_s=1.0, **settings))


def test_a_job_that_vanished_from_its_queue_is_queued_again(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    r = redis.Redis.from_url(redis_url)
    spawn_worker("--queue", "other")  # a live worker on another queue keeps `slm` unserved
    d = dispatcher(redis_url, max_attempts=3, retry_backoff_s=0.05)
    results: list[StepResult] = []
    waiter = threading.Thread(
        target=lambda: results.append(d.dispatch(logged_job("lost", log))), daemon=True
    )
    waiter.start()
    wait_for(lambda: r.llen("rq:queue:slm") == 1, what="the job to be queued")
    r.delete("rq:queue:slm")  # the job is lost: no longer queued, leased or finished
    spawn_worker()
    waiter.join(timeout=20)
    assert not waiter.is_alive(), "the coordinator never noticed the lost job"
    (result,) = results
    assert result.status == StepStatus.DONE and result.attempts == 2
    assert executions(log) == {"lost": 1}
    d.close()


@pytest.mark.parametrize(
    ("serializer", "says"),
    [
        ([], "rq.exceptions.DeserializationError"),  # RQ can't even open our JSON
        (  # RQ opens it, and run_job refuses to run there
            ["-S", "rq.serializers.JSONSerializer"],
            "JobRejectedError: a plain RQ worker took this taskloom job from queue 'slm'",
        ),
    ],
    ids=["pickle_serializer", "json_serializer"],
)
def test_a_plain_rq_worker_fails_our_jobs_and_the_step_says_why(
    tmp_path: Path, redis_url: str, serializer: list[str], says: str
) -> None:
    log = tmp_path / "executions.log"
    rq = subprocess.Popen(
        [str(Path(sys.executable).parent / "rq"), "worker", "slm", "--url", redis_url, *serializer],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: redis.Redis.from_url(redis_url).scard("rq:workers:slm"), what="rq")
        d = dispatcher(redis_url, max_attempts=2, retry_backoff_s=0.05)
        started = time.monotonic()
        result = d.dispatch(logged_job("swallowed", log))
        elapsed_s = time.monotonic() - started
        d.close()
    finally:
        rq.kill()
        _, _rq_err = rq.communicate(timeout=10)
    assert result.status == StepStatus.FAILED and result.error is not None
    assert result.error.type == "WorkerLostError"
    assert "which is no taskloom worker" in result.error.message, result.error.message
    assert says in result.error.message, result.error.message
    assert "only `taskloom worker` may serve this queue" in result.error.message
    assert result.attempts == 2 and elapsed_s < 20
    assert executions(log) == {}  # a plain RQ worker never ran it
    dead = json.loads(redis.Redis.from_url(redis_url).hget(key("dead", "r"), "swallowed") or b"{}")
    assert dead["type"] == "WorkerLostError"


def test_a_step_on_a_queue_no_worker_serves_fails_after_no_worker_timeout_s(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    plan = tmp_path / "plan.json"
    step = {
        "id": "orphan",
        "kind": "tool",
        "tool": "logged",
        "queue": "nobody",
        "inputs": {"log": str(log), "name": "orphan"},
    }
    plan.write_text(json.dumps({"version": 1, "steps": [step], "output": "$orphan.value"}))
    env = {"TASKLOOM_NO_WORKER_TIMEOUT_S": "2", "TASKLOOM_LEASE_S": "1"}
    started = time.monotonic()
    got = taskloom("run", str(plan), "--redis-url", redis_url, env=env, timeout_s=30)
    elapsed_s = time.monotonic() - started
    assert got.returncode == 1, got.stderr
    warning = "no live worker serves queue 'nobody'"
    assert got.stderr.index(warning) < got.stderr.index("taskloom: error:")  # said at once
    assert "no live worker served queue 'nobody' for" in got.stderr
    assert "Traceback" not in got.stderr and elapsed_s < 15
    submitted = taskloom("submit", str(plan), "--redis-url", redis_url)
    assert submitted.returncode == 0 and "no live worker serves queue 'nobody'" in submitted.stderr
