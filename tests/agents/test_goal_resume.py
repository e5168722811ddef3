"""Durable goal runs: the record is written as the run goes, and `resume` continues a
goal run where it stopped (finished steps kept, the joiner going on, the same budget)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.errors import RunNotFoundError
from taskloom.testing.server import ScriptedServer
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.store import SqliteRunStore
from tests.agents.test_goal import Script

TOOLS = str(Path(__file__).parent.parent / "workflows" / "crashy_tools.py")
PLAN = {
    "version": 1,
    "steps": [
        {"id": "fetch", "kind": "tool", "tool": "work", "inputs": {"name": "fetch"}},
        {
            "id": "slow",
            "kind": "tool",
            "tool": "work",
            "inputs": {"name": "slow", "seconds": 4},
            "after": ["fetch"],
        },
    ],
    "output": {"first": "$fetch.name", "second": "$slow.name"},
}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def taskloom(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def executions(counts: Path) -> list[str]:
    return counts.read_text().split() if counts.exists() else []


def saved(home: Path, run_id: str) -> RunRecord | None:
    try:
        return SqliteRunStore(home / "runs.sqlite").load(run_id)
    except RunNotFoundError:
        return None


def test_a_goal_run_killed_mid_round_resumes_where_it_stopped(
    tmp_path: Path, server: ScriptedServer
) -> None:
    script = Script([PLAN], joins=[{"action": "finish", "answer": "both fetched"}])
    server.respond = script
    home, counts = tmp_path / "home", tmp_path / "counts"
    env = {
        **os.environ,
        "TASKLOOM_HOME": str(home),
        "TASKLOOM_TEST_COUNTS": str(counts),
        "OPENAI_BASE_URL": server.url,
        "OPENAI_API_KEY": "sk-test",
    }
    goal = ["--goal", "Fetch both things", "--no-route", "--model", "scripted", "--tools", TOOLS]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskloom.cli", "run", *goal, "--run-id", "g1", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its embedded workers are in its process group
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the record shows `fetch` done while `slow` runs
            record = saved(home, "g1")
            steps = {s.id: s.status.value for s in record.steps} if record else {}
            if steps.get("fetch") == "done" and "slow" in executions(counts):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        else:
            pytest.fail("the goal run never reached its second step")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    crashed = saved(home, "g1")
    assert crashed is not None and crashed.status == RunStatus.RUNNING
    assert crashed.goal == "Fetch both things" and crashed.route is not None
    assert [r["status"] for r in crashed.rounds] == ["running"]
    assert crashed.rounds[0]["plan"]["steps"][0]["id"] == "fetch"
    assert crashed.budget is not None and crashed.budget["spent"]["llm_calls"] == 1

    resumed = taskloom(env, "resume", "g1", "--tools", TOOLS, "--model", "scripted", "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done" and record["output"] == "both fetched"  # joined
    assert executions(counts).count("fetch") == 1  # kept, not run again
    assert executions(counts).count("slow") == 2  # the killed attempt, then the resumed one
    assert len(script.planner_requests) == 1  # the plan was kept, not asked for again
    assert record["budget"]["spent"]["llm_calls"] == 2  # the plan before, the join after
    assert [r["join"]["action"] for r in record["rounds"]] == ["finish"]
    again = taskloom(env, "resume", "g1", "--tools", TOOLS, "--model", "scripted", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["output"] == "both fetched"
    assert executions(counts).count("slow") == 2  # a finished run is only read back


def test_a_goal_run_whose_plan_never_finished_streaming_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    route: dict[str, Any] = {"target": "llm", "score": 1.0, "threshold": 1.0, "reason": "off"}
    SqliteRunStore(home / "runs.sqlite").save(
        RunRecord(
            run_id="g2",
            target="goal",
            goal="Fetch both things",
            route=route,
            status=RunStatus.RUNNING,
            rounds=[
                {
                    "round": 1,
                    "run_id": "g2",
                    "source": "planner (streamed)",
                    "plan": None,
                    "status": "running",
                }
            ],
        )
    )
    env = {**os.environ, "TASKLOOM_HOME": str(home)}
    got = taskloom(env, "resume", "g2", "--model", "scripted")
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "plan was still streaming in" in lines[0]
    assert "Traceback" not in got.stderr
    kept = saved(home, "g2")
    assert kept is not None and kept.status == RunStatus.RUNNING  # nothing lost
