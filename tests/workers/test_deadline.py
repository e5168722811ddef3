"""Step deadlines (`timeout_s`) on real worker subprocesses, tools that sleep, the real model.

A step past its deadline fails with StepTimeoutError naming the step and the limit, is
retried per policy, the other branches finish, and the run fails with every finished
result kept. Executions are counted from a log file the test tools append to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import PlanValidationError
from taskloom.plan import load_plan
from taskloom.step import StepJob, StepStatus
from tests.workers.redis_helpers import Spawn, executions, spawn_worker, taskloom

__all__ = ["spawn_worker"]


def logged(step_id: str, log: Path, sleep_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    inputs = {"log": str(log), "name": step_id, "sleep_s": sleep_s, "value": 1}
    return {"id": step_id, "kind": "tool", "tool": "logged", "inputs": inputs, **extra}


def plan_file(tmp_path: Path, *steps: dict[str, Any]) -> str:
    path = tmp_path / "plan.json"
    output = {s["id"]: f"${s['id']}.value" for s in steps}
    path.write_text(json.dumps({"version": 1, "steps": list(steps), "output": output}))
    return str(path)


def still_serves(redis_url: str, log: Path) -> bool:
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    job = StepJob(
        run_id="later",
        step_id="next",
        kind="tool",
        tool="logged",
        inputs={"log": str(log), "name": "next", "value": 7},
    )
    try:
        return d.dispatch(job).value == {"value": 7}
    finally:
        d.close()


def test_a_sleeping_tool_is_stopped_at_its_deadline_and_the_worker_keeps_serving(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    worker = spawn_worker()
    plan = plan_file(
        tmp_path,
        logged("slow", log, sleep_s=30, timeout_s=1),
        logged("a", log),
        logged("b", log, after=["a"]),
    )
    env = {"TASKLOOM_MAX_ATTEMPTS": "2", "TASKLOOM_LEASE_S": "1"}
    started = time.monotonic()
    got = taskloom("run", plan, "--redis-url", redis_url, "--json", env=env)
    elapsed_s = time.monotonic() - started
    assert got.returncode == 1, got.stderr
    record = json.loads(got.stdout)
    steps = {s["id"]: s for s in record["steps"]}
    slow = steps["slow"]
    assert slow["status"] == "failed" and slow["attempts"] == 2
    assert slow["error"]["type"] == "StepTimeoutError"
    assert "step 'slow'" in got.stderr and "deadline of 1 s" in slow["error"]["message"]
    assert steps["a"]["status"] == "done" and steps["b"]["status"] == "done"
    assert executions(log) == {"slow": 2, "a": 1, "b": 1}
    assert "slow" not in executions(log, "end")  # stopped in place, twice
    assert elapsed_s < 15, f"two 1 s attempts took {elapsed_s:.1f} s"
    assert worker.poll() is None and still_serves(redis_url, log)


def test_a_tool_that_ignores_the_interrupt_gets_its_worker_restarted(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    """The default deadline (TASKLOOM_STEP_TIMEOUT_S, on the coordinator) applies too."""
    log = tmp_path / "executions.log"
    worker = spawn_worker()
    broker = Broker(redis_url, settings=Settings())
    (before,) = broker.live_workers()
    stuck = {
        "id": "stuck",
        "kind": "tool",
        "tool": "stubborn",
        "inputs": {"log": str(log), "name": "stuck", "sleep_s": 60},
    }
    plan = plan_file(tmp_path, stuck, logged("a", log))
    env = {"TASKLOOM_MAX_ATTEMPTS": "2", "TASKLOOM_STEP_TIMEOUT_S": "1"}
    got = taskloom("run", plan, "--redis-url", redis_url, "--json", env=env, timeout_s=90)
    assert got.returncode == 1, got.stderr
    steps = {s["id"]: s for s in json.loads(got.stdout)["steps"]}
    assert steps["stuck"]["status"] == "failed" and steps["stuck"]["attempts"] == 2
    assert steps["stuck"]["error"]["type"] == "StepTimeoutError"
    assert steps["a"]["status"] == "done"
    assert executions(log) == {"stuck": 2, "a": 1}
    # The same process (re-executed in place) registered again under a new name.
    assert worker.poll() is None and still_serves(redis_url, log)
    (after,) = broker.live_workers()
    assert after["pid"] == before["pid"] and after["name"] != before["name"]
    worker.terminate()
    worker.wait(timeout=20)
    assert worker.stderr is not None
    stderr = worker.stderr.read().decode()
    assert stderr.count("worker_restarting") == 2 and "how=exec" in stderr, stderr


def test_timeout_s_is_part_of_the_plan_format(monkeypatch: pytest.MonkeyPatch) -> None:
    step = {"id": "a", "kind": "tool", "tool": "noop", "inputs": {}, "timeout_s": 2.5}
    plan = load_plan({"version": 1, "steps": [step]})
    assert plan.steps[0].timeout_s == 2.5
    with pytest.raises(PlanValidationError, match="timeout_s"):
        load_plan({"version": 1, "steps": [{**step, "timeout_s": 0}]})
    assert Settings().step_timeout_s is None
    monkeypatch.setenv("TASKLOOM_STEP_TIMEOUT_S", "4")
    assert Settings.from_env().step_timeout_s == 4.0


@pytest.mark.model
def test_an_slm_step_stops_decoding_at_its_deadline(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn, default_model_path: str
) -> None:
    """A real worker on the real default model: a long generation stops at 0.5 s."""
    spawn_worker("--model", default_model_path)
    broker = Broker(redis_url, settings=Settings())
    (before,) = broker.live_workers()
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url, max_attempts=1))
    job = StepJob(
        run_id="slm",
        step_id="essay",
        kind="generate",
        inputs={"instruction": "Write a very long essay about the history of the sea."},
        timeout_s=0.5,
    )
    result = d.dispatch(job)
    d.close()
    assert result.status == StepStatus.FAILED and result.error is not None
    assert result.error.type == "StepTimeoutError" and "step 'essay'" in result.error.message
    # Stopped by the decode loop itself, at the deadline: the worker was not restarted.
    assert 450 < result.run_ms < 2000, f"decoding went on for {result.run_ms:.0f} ms"
    assert [w["name"] for w in broker.live_workers()] == [before["name"]]


def test_a_python_workflow_sets_timeout_s_and_a_tool_can_check_it() -> None:
    """Inline, the deadline is cooperative: a tool that calls deadline.check() stops."""
    from taskloom import Flow, InlineDispatcher, ScriptedChatModel, run, tool, workflow
    from taskloom.deadline import check

    @tool
    def spin(seconds: float) -> dict[str, int]:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            check()
            time.sleep(0.01)
        return {"value": 1}

    @workflow(tools=[spin])
    def two(flow: Flow) -> dict[str, Any]:
        slow = flow.call(spin, id="slow", seconds=30, timeout_s=0.3)
        quick = flow.call(spin, id="quick", seconds=0)
        return {"slow": slow["value"], "quick": quick["value"]}

    settings = Settings(max_attempts=2, retry_backoff_s=0.01)
    dispatcher = InlineDispatcher(model=ScriptedChatModel(), tools=two.tools, settings=settings)
    started = time.monotonic()
    record = run(two, {}, dispatcher=dispatcher, settings=settings)
    assert time.monotonic() - started < 5
    steps = {s.id: s for s in record.steps}
    assert steps["quick"].status == StepStatus.DONE
    slow = steps["slow"]
    assert slow.status == StepStatus.FAILED and slow.attempts == 2
    assert slow.error is not None and slow.error.type == "StepTimeoutError"
    assert "deadline of 0.3 s" in slow.error.message
