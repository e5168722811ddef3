"""RQ's own tools read taskloom's jobs: `rq info` and RQ's registries, on a real run.

A plan runs with `taskloom run` over the real test server and real `taskloom worker`
subprocesses; `rq info` (RQ's command line) and RQ's Python registries, on its JSON
serializer as rq-dashboard reads them, must show the jobs executing, finished and
failed. A job requeued from `FailedJobRegistry` runs its step again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from taskloom.config import Settings, key
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Broker
from tests.workers.redis_helpers import Spawn, executions, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]

RQ = str(Path(sys.executable).parent / "rq")
COUNTS = re.compile(r"queue (\S+) (\d+), (\d+) executing, (\d+) finished, (\d+) failed")


def rq_info(url: str) -> dict[str, tuple[int, int, int, int]]:
    """`rq info` (queues and workers), checked to exit 0; per queue: (queued, executing,
    finished, failed), from its raw output."""
    done = subprocess.run(
        [RQ, "info", "--url", url, "--raw"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = {
        m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in COUNTS.finditer(done.stdout)
    }
    assert found, done.stdout
    return found


def registries(url: str, queue: str = "slm") -> tuple[list[str], list[str], list[str]]:
    r = redis.Redis.from_url(url)
    return tuple(  # type: ignore[return-value]
        cls(queue, connection=r, serializer=JSONSerializer).get_job_ids()
        for cls in (StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry)
    )


def fetch(url: str, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis.Redis.from_url(url), serializer=JSONSerializer)


def write_plan(path: Path, steps: list[dict[str, Any]], output: Any) -> Path:
    path.write_text(json.dumps({"version": 1, "steps": steps, "output": output}))
    return path


def test_rq_info_and_registries_show_executing_then_finished(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log, gate = tmp_path / "executions.log", tmp_path / "gate"
    steps = [
        {
            "id": "quick",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": "quick"},
        },
        {
            "id": "held",
            "kind": "tool",
            "tool": "gated",
            "inputs": {"log": str(log), "name": "held", "gate": str(gate)},
        },
    ]
    plan = write_plan(tmp_path / "plan.json", steps, {"held": "$held.value"})
    spawn_worker()
    spawn_worker()
    args = [sys.executable, "-m", "taskloom.cli", "run", str(plan), "--redis-url", redis_url]
    run = subprocess.Popen([*args, "--run-id", "rq1", "--json"], stdout=subprocess.PIPE)
    try:
        # `quick` finished and `held` runs (it waits for the gate). The registries are
        # read one after the other, so `quick` may be read as started, then as finished:
        # wait until one job is started and it is not the finished one.
        def settled() -> tuple[list[str], list[str], list[str]] | None:
            lists = registries(redis_url)
            started, finished = set(lists[0]), set(lists[1])
            return lists if len(started) == 1 and finished and not started & finished else None

        started, _, _ = wait_for(
            settled,
            timeout_s=60,
            what="one job finished and one in StartedJobRegistry",
        )
        assert rq_info(redis_url)["slm"] == (0, 1, 1, 0)
        held = redis.Redis.from_url(redis_url).hget(key("jobs", "rq1"), "held")
        assert held is not None and started == [held.decode()]
        job = fetch(redis_url, started[0])
        assert job.get_status() == "started" and job.started_at is not None
        assert job.worker_name and job.ended_at is None
        assert job.func_name == payload.JOB_FUNC  # its data reads as RQ's JSON call
        gate.touch()
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0 and json.loads(out)["status"] == "done"
    assert rq_info(redis_url)["slm"] == (0, 0, 2, 0)
    jobs = redis.Redis.from_url(redis_url).hgetall(key("jobs", "rq1"))
    started_ids, finished_ids, failed_ids = registries(redis_url)
    assert started_ids == [] and failed_ids == []
    assert sorted(finished_ids) == sorted(v.decode() for v in jobs.values())
    for job_id in finished_ids:
        job = fetch(redis_url, job_id)
        assert job.get_status() == "finished" and job.origin == "slm"
        assert job.ended_at is not None and job.started_at is not None
        assert job.ended_at >= job.started_at
    assert executions(log) == {"quick": 1, "held": 1}


def test_a_job_requeued_from_rqs_failed_registry_runs_its_step_again(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log, flag = tmp_path / "executions.log", tmp_path / "broken"
    flag.touch()
    steps = [
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
    plan = write_plan(tmp_path / "plan.json", steps, {"after": "$after.value"})
    spawn_worker()
    env = {"TASKLOOM_MAX_ATTEMPTS": "1"}
    failed = taskloom("run", str(plan), "--redis-url", redis_url, "--run-id", "rq2", env=env)
    assert failed.returncode == 1, failed.stderr
    assert executions(log) == {"good": 1, "flaky": 1}
    assert rq_info(redis_url)["slm"] == (0, 0, 1, 1)
    _, finished, failed_ids = registries(redis_url)
    r = redis.Redis.from_url(redis_url)
    flaky_job = r.hget(key("jobs", "rq2"), "flaky")
    assert flaky_job is not None and failed_ids == [flaky_job.decode()]
    assert fetch(redis_url, failed_ids[0]).get_status() == "failed"
    broker = Broker(redis_url, settings=Settings())
    assert json.loads(broker.result("rq2", "flaky") or b"{}")["status"] == "failed"

    flag.unlink()  # the cause is fixed: requeue it the way RQ's tools do
    registry = FailedJobRegistry("slm", connection=r, serializer=JSONSerializer)
    registry.requeue(failed_ids[0])
    wait_for(
        lambda: failed_ids[0] in registries(redis_url)[1],
        timeout_s=60,
        what="the requeued job to finish",
    )
    assert executions(log) == {"good": 1, "flaky": 2}  # it ran again, once
    assert json.loads(broker.result("rq2", "flaky") or b"{}")["status"] == "done"
    assert rq_info(redis_url)["slm"] == (0, 0, 2, 0)
    assert not r.hexists(key("dead", "rq2"), "flaky")

    # Resuming the run merges that result once, and does not run the step a third time.
    resumed = taskloom("resume", "rq2", "--redis-url", redis_url, "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done" and record["output"] == {"after": 1}
    assert executions(log) == {"good": 1, "flaky": 2, "after": 1}
    assert sorted(s["id"] for s in record["steps"] if s["status"] == "done") == [
        "after",
        "flaky",
        "good",
    ]
    assert len(finished) == 1  # before the requeue: only `good` had finished
