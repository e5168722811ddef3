"""`taskloom.Cluster` and `taskloom.run_many`: one start-up for many runs, records in
input order, the runs in flight together (on the scripted model; the real model's run is
tests/test_cluster_model.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom.errors import (
    ConfigError,
    InputError,
    PlanValidationError,
    TargetError,
    UserError,
)
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.store import SqliteRunStore
from tests.workers.redis_helpers import Spawn, spawn_worker

__all__ = ["spawn_worker"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "triage.json"
INPUTS = json.loads((ROOT / "examples" / "triage_input.json").read_text())


def emails(n: int) -> list[dict[str, Any]]:
    return [{**INPUTS, "email": f"Hi, this is customer {i}. {INPUTS['email']}"} for i in range(n)]


def test_a_cluster_starts_its_workers_once_for_every_run(taskloom_home: Path) -> None:
    with taskloom.Cluster(workers=1, model="scripted") as cluster:
        assert cluster.worker_starts == 0  # nothing starts before the first run
        first = cluster.run(str(PLAN), inputs=INPUTS)
        handle = cluster.submit(str(PLAN), INPUTS)
        many = cluster.run_many(str(PLAN), emails(3))
        submitted = handle.wait()
    assert cluster.worker_starts == 1  # still told once it has stopped
    with pytest.raises(UserError, match="this Cluster is closed"):
        cluster.run(str(PLAN), INPUTS)
    records = [first, submitted, *many]
    assert all(r.status == taskloom.RunStatus.DONE for r in records)
    assert [r.inputs for r in many] == emails(3)  # in input order
    assert submitted.run_id == handle.run_id
    workers = {s.worker for r in records for s in r.steps}
    assert len(workers) == 1 and "inline" not in workers  # one worker process ran them all


def test_run_is_a_cluster_used_once(taskloom_home: Path) -> None:
    """The one-shot path keeps its records where `resume` and `status` look."""
    records = taskloom.run_many(str(PLAN), emails(2), model="scripted")
    assert [r.inputs for r in records] == emails(2)
    kept = SqliteRunStore(taskloom.Settings(home=taskloom_home).state_path)
    assert [kept.load(r.run_id).status for r in records] == ["done", "done"]


def test_a_cluster_over_a_configured_redis_starts_nothing(
    redis_url: str, taskloom_home: Path, spawn_worker: Spawn
) -> None:
    spawn_worker()
    with taskloom.Cluster(redis_url=redis_url) as cluster:
        records = cluster.run_many(str(PLAN), emails(3))
        assert cluster.worker_starts == 0
    assert [r.inputs for r in records] == emails(3)
    assert {r.status for r in records} == {taskloom.RunStatus.DONE}
    broker = taskloom.RedisDispatcher(url=redis_url).broker
    for r in records:  # mirrored to Redis, for `taskloom status` from any machine
        assert RedisRunStore(broker).load(r.run_id).status == "done"


def test_run_many_has_every_run_in_flight_at_once(taskloom_home: Path) -> None:
    """Each run's one step waits at a barrier for all the others: run one at a time, the
    first would wait alone and fail."""
    meeting = threading.Barrier(4, timeout=30)

    @taskloom.tool
    def meet(name: str) -> str:
        meeting.wait()
        return name

    plan = {
        "version": 1,
        "steps": [{"id": "m", "kind": "tool", "tool": "meet", "inputs": {"name": "$input.name"}}],
        "output": "$m",
    }
    names = [{"name": n} for n in ("a", "b", "c", "d")]
    records = taskloom.run_many(
        taskloom.load_plan(plan), names, tools=[meet], is_inline=True, max_attempts=1
    )
    assert [r.output for r in records] == ["a", "b", "c", "d"]


def test_every_inputs_is_checked_before_anything_starts(taskloom_home: Path) -> None:
    inputs = [INPUTS, {"kb": INPUTS["kb"]}]  # the second has no email
    with taskloom.Cluster(model="scripted") as cluster:
        with pytest.raises(PlanValidationError, match=r"^inputs 2: .*email"):
            cluster.run_many(str(PLAN), inputs)
        assert cluster.worker_starts == 0


def test_a_workflow_s_missing_input_names_which_inputs(taskloom_home: Path) -> None:
    @taskloom.tool
    def shout(name: str) -> str:
        return name.upper()

    @taskloom.workflow(tools=[shout])
    def hello(flow: taskloom.Flow, name: str) -> Any:
        return flow.call(shout, name=name)

    with pytest.raises(InputError, match=r"^inputs 3: workflow 'hello'"):
        taskloom.run_many(hello, [{"name": "a"}, {"name": "b"}, {}], is_inline=True)
    records = taskloom.run_many(hello, [{"name": "a"}, {"name": "b"}], is_inline=True)
    assert [r.output for r in records] == ["A", "B"]


def test_the_cluster_s_own_settings_are_refused_on_one_run(taskloom_home: Path) -> None:
    with taskloom.Cluster(model="scripted", is_inline=True) as cluster:
        with pytest.raises(ConfigError, match="model= is the cluster's setting"):
            cluster.run(str(PLAN), INPUTS, model="other.gguf")
        record = cluster.run(str(PLAN), INPUTS, max_cost_usd=1.0)  # a run's own budget
    assert record.status == "done"


def test_a_handle_waited_on_too_briefly_gives_the_latest_record(taskloom_home: Path) -> None:
    gate = threading.Event()

    @taskloom.tool
    def hold(name: str) -> str:
        gate.wait(30)
        return name

    plan = {
        "version": 1,
        "steps": [{"id": "h", "kind": "tool", "tool": "hold", "inputs": {"name": "x"}}],
        "output": "$h",
    }
    with taskloom.Cluster(tools=[hold], is_inline=True) as cluster:
        handle = cluster.submit(taskloom.load_plan(plan))
        early = handle.wait(timeout_s=0)
        assert early.run_id == handle.run_id and not early.status.is_final
        assert not handle.done()
        gate.set()
        assert handle.wait().output == "x"


def test_leaving_with_an_error_cancels_the_runs_in_flight(taskloom_home: Path) -> None:
    started, stop = threading.Event(), threading.Event()

    @taskloom.tool
    def block(name: str) -> str:
        started.set()
        stop.wait(30)  # until the cluster cancels the run
        return name

    plan = {
        "version": 1,
        "steps": [
            {"id": "a", "kind": "tool", "tool": "block", "inputs": {"name": "a"}},
            {"id": "b", "kind": "tool", "tool": "block", "inputs": {"name": "$a"}},
        ],
        "output": "$b",
    }
    cluster = taskloom.Cluster(tools=[block], is_inline=True)
    with pytest.raises(RuntimeError, match="stop"), cluster:
        handle = cluster.submit(taskloom.load_plan(plan), cancelled=stop)
        started.wait(30)
        raise RuntimeError("stop")
    record = handle.wait()
    assert record.status == taskloom.RunStatus.CANCELLED
    assert [s.status for s in record.steps] == ["done", "cancelled"]


def test_a_later_target_whose_tools_the_workers_lack_says_what_to_pass(
    taskloom_home: Path,
) -> None:
    module = str(ROOT / "examples" / "triage.py")
    with taskloom.Cluster(model="scripted") as cluster:
        assert cluster.run(str(PLAN), INPUTS).status == "done"
        with pytest.raises(TargetError, match=r"pass tool_modules=\[.*triage\.py'\] to Cluster"):
            cluster.run(f"{module}:triage", INPUTS)
    with taskloom.Cluster(model="scripted", tool_modules=[module]) as cluster:
        assert cluster.run(str(PLAN), INPUTS).status == "done"
        assert cluster.run(f"{module}:triage", INPUTS).status == "done"
