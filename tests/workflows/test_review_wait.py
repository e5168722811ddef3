"""A step under review waits durably for a person: real Redis, real worker processes.

The plan: `first` → `middle` (review: always), and `side`, independent of both. The run
waits on `middle` while `side` finishes; its coordinator is SIGKILLed and another takes
over, after every worker and Redis (append-only file on) restarted; an edited approval
then finishes the run. The tools append to an execution log
outside Redis, which shows that no step ran twice.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.review import ReviewDesk
from tests.conftest import RedisServer
from tests.workers.redis_helpers import Spawn, executions, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]

VALUE = {"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}


def three_steps(log: Path, **review: Any) -> dict[str, Any]:
    def logged(name: str, value: int, sleep_s: float = 0.0) -> dict[str, Any]:
        return {"log": str(log), "name": name, "value": value, "sleep_s": sleep_s}

    return {
        "version": 1,
        "steps": [
            {"id": "first", "kind": "tool", "tool": "logged", "inputs": logged("first", 1)},
            {
                "id": "middle",
                "kind": "tool",
                "tool": "logged",
                "inputs": logged("middle", 7),
                "after": ["first"],
                "output": VALUE,
                **review,
            },
            {"id": "side", "kind": "tool", "tool": "logged", "inputs": logged("side", 3, 0.2)},
        ],
        "output": {"middle": "$middle.value", "side": "$side.value"},
    }


def submit(
    tmp_path: Path, redis_url: str, plan: dict[str, Any], env: dict[str, str] | None = None
) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    done = taskloom("submit", str(path), "--redis-url", redis_url, env=env)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


def desk(redis_url: str) -> ReviewDesk:
    settings = Settings()
    return ReviewDesk(Broker(redis_url, settings=settings), settings=settings)


def record_of(redis_url: str, run_id: str) -> Any:
    return RedisRunStore(Broker(redis_url, settings=Settings())).load(run_id)


def waiting_on_middle(redis_url: str, run_id: str) -> bool:
    record = record_of(redis_url, run_id)
    steps = {s.id: s.status.value for s in record.steps}
    return record.status.value == "waiting" and steps.get("middle") == "waiting"


def test_a_review_survives_killed_workers_and_redis_and_an_edit_finishes_the_run(
    tmp_path: Path, redis_url: str, redis_server: RedisServer, spawn_worker: Spawn
) -> None:
    log = tmp_path / "executions.log"
    slm = spawn_worker()
    coordinator = spawn_worker("--queue", "runs")
    run_id = submit(tmp_path, redis_url, three_steps(log, review="always"))

    wait_for(lambda: waiting_on_middle(redis_url, run_id), what="the run to wait on middle")
    wait_for(lambda: executions(log, "end").get("side") == 1, what="the side branch")
    [pending] = desk(redis_url).pending()
    assert (pending["run_id"], pending["step"], pending["value"]) == (
        run_id,
        "middle",
        {"value": 7},
    )
    listed = taskloom("reviews", "--json", "--redis-url", redis_url)
    assert [(r["run_id"], r["step"], r["why"]) for r in json.loads(listed.stdout)] == [
        (run_id, "middle", "review: always")
    ]

    for proc in (coordinator, slm):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    redis_server.stop()  # the append-only file keeps the review, the results, the run job
    redis_server.start()
    spawn_worker()
    spawn_worker("--queue", "runs")

    bad = taskloom(
        "approve", run_id, "middle", "--value", '{"value": "x"}', "--redis-url", redis_url
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "value" in bad.stderr, bad.stderr
    good = taskloom(
        "approve",
        run_id,
        "middle",
        "--value",
        '{"value": 42}',
        "--by",
        "ana",
        "--redis-url",
        redis_url,
    )
    assert good.returncode == 0, good.stderr

    done = taskloom("result", run_id, "--wait", "--json", "--redis-url", redis_url, timeout_s=90)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["output"] == {"middle": 42, "side": 3}
    assert executions(log) == {"first": 1, "middle": 1, "side": 1}
    [decided] = record["reviews"]
    assert (decided["action"], decided["by"]) == ("edit", "ana")
    assert (decided["before"], decided["after"]) == ({"value": 7}, {"value": 42})
    assert desk(redis_url).pending() == []


@pytest.mark.parametrize("how", ["reject", "timeout"])
def test_a_rejected_or_unanswered_review_fails_the_run_with_one_line(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn, how: str
) -> None:
    log = tmp_path / "executions.log"
    spawn_worker()
    spawn_worker("--queue", "runs")
    review = {"review": "always"} | ({"review_timeout_s": 0.5} if how == "timeout" else {})
    run_id = submit(tmp_path, redis_url, three_steps(log, **review))
    if how == "reject":
        wait_for(lambda: waiting_on_middle(redis_url, run_id), what="the run to wait")
        args = ("reject", run_id, "middle", "--reason", "wrong total", "--redis-url", redis_url)
        assert taskloom(*args).returncode == 0

    done = taskloom("result", run_id, "--wait", "--redis-url", redis_url, timeout_s=90)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if x.startswith("taskloom: error:")]
    record = record_of(redis_url, run_id)
    steps = {s.id: s for s in record.steps}
    assert steps["side"].status.value == "done" and steps["side"].value == {"value": 3}
    assert steps["first"].status.value == "done"
    if how == "reject":
        assert "rejected by" in line and "wrong total" in line
        assert steps["middle"].status.value == "failed"
        assert steps["middle"].error is not None
        assert steps["middle"].error.type == "ReviewRejectedError"
    else:
        assert "review timed out" in line
        assert steps["middle"].status.value == "timed_out"
        assert steps["middle"].error is not None
        assert steps["middle"].error.type == "ReviewTimedOutError"
    assert [r["action"] for r in record.reviews] == [how]
    again = taskloom("approve", run_id, "middle", "--redis-url", redis_url)
    assert again.returncode == 2 and "already decided" in again.stderr
    assert redis.Redis.from_url(redis_url).hlen("taskloom:reviews") == 0


def test_a_cancelled_run_stops_waiting_for_its_review(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    spawn_worker()
    spawn_worker("--queue", "runs")
    run_id = submit(tmp_path, redis_url, three_steps(tmp_path / "log", review="always"))
    wait_for(lambda: waiting_on_middle(redis_url, run_id), what="the run to wait")
    assert taskloom("cancel", run_id, "--redis-url", redis_url).returncode == 0
    done = taskloom("result", run_id, "--wait", "--json", "--redis-url", redis_url, timeout_s=90)
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "cancelled"
    assert desk(redis_url).pending() == []
