"""Submitting a Python workflow: refused at once when no live `runs` worker has loaded it,
and `resume` suggested only where resuming can help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.step import ErrorInfo, StepStatus
from taskloom.workflows.record import RunRecord, RunStatus, StepRecord
from taskloom.workflows.redis_store import RedisRunStore
from tests.workers.redis_helpers import TOOLS, Spawn, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]

FLOWS = """
from taskloom import Flow, workflow


@workflow
def hello(flow: Flow, x: int) -> object:
    return flow.call("noop", x=x)["x"]
"""


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "flows.py"
    path.write_text(FLOWS)
    return str(path)


def test_a_workflow_no_runs_worker_loaded_is_refused_at_once(
    flows: str, redis_url: str, spawn_worker: Spawn
) -> None:
    args = ("--input", '{"x": 3}', "--redis-url", redis_url)
    lacking = spawn_worker("--queue", "runs")  # started with --tools redis_tools.py only
    refused = taskloom("submit", f"{flows}:hello", *args)
    assert refused.returncode == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line == (
        f"taskloom: error: no live runs worker can run workflow 'hello' (they loaded "
        f"{TOOLS}); start one with: taskloom worker --queue runs --tools {flows}"
    )
    assert redis.Redis.from_url(redis_url).llen("rq:queue:runs") == 0  # nothing queued

    # The worker without the workflow leaves, or it could claim the run and fail it: a
    # runs worker does not hand a workflow it lacks to another (docs/cli.md, submit).
    lacking.terminate()
    lacking.wait(timeout=30)
    spawn_worker("--queue", "runs", "--tools", flows)
    spawn_worker()
    broker = Broker(redis_url, settings=Settings())
    wait_for(lambda: len(broker.live_workers()) == 2, timeout_s=30, what="the two workers live")
    accepted = taskloom("submit", f"{flows}:hello", *args)
    assert accepted.returncode == 0 and accepted.stderr == "", accepted.stderr
    got = taskloom("result", accepted.stdout.strip(), "--wait", "--timeout", "30", *args[2:])
    assert got.returncode == 0 and got.stdout.strip() == "3", got.stderr


def test_with_no_runs_worker_live_the_run_waits_for_one(flows: str, redis_url: str) -> None:
    queued = taskloom("submit", f"{flows}:hello", "--input", '{"x": 1}', "--redis-url", redis_url)
    assert queued.returncode == 0, queued.stderr
    assert "no live worker serves queue 'runs'" in queued.stderr
    assert "only if started with --tools naming its module" in queued.stderr


def failed_run(run_id: str, cause: ErrorInfo) -> RunRecord:
    step = StepRecord(id="a", kind="tool", status=StepStatus.FAILED, error=cause, attempts=3)
    error = ErrorInfo(type="StepFailedError", message=f"step 'a': {cause.message}")
    return RunRecord(run_id=run_id, status=RunStatus.FAILED, steps=[step], error=error)


@pytest.mark.parametrize(
    ("record", "is_resumable"),
    [
        (failed_run("flaky", ErrorInfo(type="RuntimeError", message="hiccup")), True),
        (failed_run("tool", ErrorInfo(type="ToolError", message="no tool 'x'")), False),
        (
            RunRecord(
                run_id="unregistered",
                status=RunStatus.FAILED,
                error=ErrorInfo(
                    type="JobRejectedError",
                    message="workflow 'hello' is not registered on this worker",
                ),
            ),
            False,
        ),
        (RunRecord(run_id="stopped", status=RunStatus.CANCELLED), True),
        (RunRecord(run_id="fine", status=RunStatus.DONE), False),
    ],
    ids=lambda v: v.run_id if isinstance(v, RunRecord) else str(v),
)
def test_resume_is_suggested_only_where_it_can_help(
    record: RunRecord, is_resumable: bool, redis_url: str
) -> None:
    assert record.is_resumable is is_resumable
    if record.status == RunStatus.DONE:
        return
    record.error = record.error or ErrorInfo(type="RunCancelledError", message="cancelled")
    record.finished_at = record.created_at + 1
    RedisRunStore(Broker(redis_url, settings=Settings())).save(record)
    shown = taskloom("result", record.run_id, "--redis-url", redis_url)
    assert shown.returncode == 1 and "taskloom: error:" in shown.stderr
    hint = f"resume with: taskloom resume {record.run_id}"
    assert (hint in shown.stderr) is is_resumable, json.dumps(shown.stderr)
