"""Workers that die, drain or are told to stop: nothing is lost, nothing merged twice."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from taskloom.config import Settings, key
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepResult, StepStatus
from tests.workers.redis_helpers import Spawn, counts, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]


def work_job(url: str, run_id: str, step_id: str, sleep_s: float) -> StepJob:
    inputs = {"url": url, "name": step_id, "sleep_s": sleep_s, "value": len(step_id)}
    return StepJob(run_id=run_id, step_id=step_id, kind="tool", tool="work", inputs=inputs)


def test_sigkill_mid_step_requeues_and_merges_each_step_once(
    redis_url: str, spawn_worker: Spawn
) -> None:
    victim = spawn_worker()
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    steps = [f"s{i}" for i in range(6)]
    with ThreadPoolExecutor(len(steps)) as pool:
        futures = [pool.submit(d.dispatch, work_job(redis_url, "k1", s, 0.4)) for s in steps]
        wait_for(lambda: counts(redis_url, "test:started"), what="a step to start")
        victim.send_signal(signal.SIGKILL)  # in the middle of a step, holding its lease
        victim.wait(timeout=5)
        spawn_worker()
        results: list[StepResult] = [f.result(timeout=60) for f in futures]
    assert all(r.status == StepStatus.DONE for r in results)
    assert [r.value["value"] for r in results] == [len(s) for s in steps]
    started = counts(redis_url, "test:started")
    assert sum(started.values()) > len(steps)  # the killed step ran again elsewhere
    r = redis.Redis.from_url(redis_url)
    merges = counts(redis_url, key("merges", "k1"))
    assert merges == dict.fromkeys(steps, 1)
    assert r.zcard(key("leases")) == 0


def test_sigterm_drains_the_current_step(redis_url: str, spawn_worker: Spawn) -> None:
    worker = spawn_worker()
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    result: list[StepResult] = []
    t = threading.Thread(
        target=lambda: result.append(d.dispatch(work_job(redis_url, "k2", "long", 1.0)))
    )
    t.start()
    wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0  # it finished the step, then exited
    t.join(timeout=10)
    assert result and result[0].status == StepStatus.DONE
    assert counts(redis_url, "test:executed") == {"long": 1}
    assert not redis.Redis.from_url(redis_url).sismember(
        "rq:workers", f"rq:worker:{result[0].worker}"
    )


def test_a_second_sigterm_requeues_the_running_step(redis_url: str, spawn_worker: Spawn) -> None:
    worker = spawn_worker()
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    result: list[StepResult] = []
    t = threading.Thread(
        target=lambda: result.append(d.dispatch(work_job(redis_url, "k3", "slow", 3.0)))
    )
    t.start()
    wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert counts(redis_url, "test:executed") == {}  # stopped, not finished
    spawn_worker()
    t.join(timeout=30)
    assert result and result[0].status == StepStatus.DONE
    assert counts(redis_url, "test:executed") == {"slow": 1}


def test_a_killed_coordinator_is_taken_over_without_rerunning_finished_steps(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    steps = [
        {
            "id": s,
            "kind": "tool",
            "tool": "work",
            "after": after,
            "inputs": {"url": "$input.url", "name": s, "sleep_s": 0.3, "value": i},
        }
        for i, (s, after) in enumerate([("one", []), ("two", ["one"]), ("three", ["two"])])
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "steps": steps, "output": "$three.value"}))
    coordinator = spawn_worker("--queue", "runs")
    spawn_worker()
    args = ("--redis-url", redis_url)
    run_id = taskloom("submit", str(plan), "--input", json.dumps({"url": redis_url}), *args)
    run_id = run_id.stdout.strip()
    wait_for(lambda: counts(redis_url, "test:executed").get("one"), what="step one to finish")
    coordinator.send_signal(signal.SIGKILL)
    spawn_worker("--queue", "runs")  # takes the run over once the 1 s lease runs out
    got = taskloom("result", run_id, "--wait", "--timeout", "30", "--json", *args)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["output"] == 2
    assert counts(redis_url, "test:executed")["one"] == 1  # finished steps are not rerun
    merges = counts(redis_url, key("merges", run_id))
    assert merges == {"one": 1, "two": 1, "three": 1, "_run": 1}


def test_an_embedded_worker_exits_when_its_parent_is_gone(
    redis_url: str, spawn_worker: Spawn
) -> None:
    orphan = spawn_worker("--parent-pid", "1")  # its parent is pytest, not pid 1
    assert orphan.wait(timeout=15) == 0
    assert not redis.Redis.from_url(redis_url).smembers("rq:workers:slm")


def test_a_job_that_keeps_killing_its_worker_is_dead_lettered(
    redis_url: str, spawn_worker: Spawn
) -> None:
    env = {"TASKLOOM_MAX_ATTEMPTS": "2"}
    spawn_worker("--queue", "other", env=env)  # stays alive: its heartbeat reaps leases
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    job = StepJob(
        run_id="k5", step_id="p", kind="tool", tool="poison", inputs={"url": redis_url, "name": "p"}
    )
    result: list[StepResult] = []
    t = threading.Thread(target=lambda: result.append(d.dispatch(job)))
    t.start()
    for deliveries in (1, 2):
        victim = spawn_worker(env=env)
        assert victim.wait(timeout=20) == -signal.SIGKILL
        assert counts(redis_url, "test:started") == {"p": deliveries}
    t.join(timeout=20)
    assert result and result[0].status == StepStatus.FAILED
    assert result[0].error and result[0].error.type == "WorkerLostError"
    assert redis.Redis.from_url(redis_url).hexists(key("dead", "k5"), "p")


def test_a_step_whose_worker_is_killed_at_every_delivery_is_dead_lettered_naming_them(
    redis_url: str, spawn_worker: Spawn
) -> None:
    """The chaos test's failure on record, made to happen: a harmless step whose worker
    something else kills (SIGKILL) while it holds the step, at each delivery. The poison
    rule can't tell it from a step that kills its worker: after `max_attempts` (3) lost
    deliveries it is dead-lettered, and the error names each lost worker."""
    spawn_worker("--queue", "other")  # stays alive: its heartbeat reaps leases
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    result: list[StepResult] = []
    job = work_job(redis_url, "k9", "s0", 30.0)  # holds its worker until killed
    t = threading.Thread(target=lambda: result.append(d.dispatch(job)))
    t.start()
    killed = []
    for deliveries in (1, 2, 3):
        victim = spawn_worker()
        want = {"s0": deliveries}
        wait_for(lambda w=want: counts(redis_url, "test:started") == w, what="s0 to start")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=5) == -signal.SIGKILL
        killed.append(victim.pid)
    t.join(timeout=30)
    assert result and result[0].status == StepStatus.FAILED
    error = result[0].error
    assert error is not None and error.type == "WorkerLostError"
    assert "stopped answering 3 times" in error.message
    lost = re.findall(r"\.(\d+)\.\w+ at ", error.message)  # host.pid.tag at <time>
    assert [int(pid) for pid in lost] == killed
    assert counts(redis_url, "test:started") == {"s0": 3}  # no 4th delivery
