"""The distributed CLI: embedded runs, submit/status/result/cancel/workers, outages."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from taskloom.cli import main
from taskloom.config import key
from tests.conftest import RedisServer
from tests.workers.redis_helpers import TOOLS, Spawn, counts, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]


def work(step_id: str, sleep_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    inputs = {"url": "$input.url", "name": step_id, "sleep_s": sleep_s, "value": 1}
    return {"id": step_id, "kind": "tool", "tool": "work", "inputs": inputs, **extra}


def plan_file(tmp_path: Path, *steps: dict[str, Any], output: Any = None) -> str:
    path = tmp_path / "plan.json"
    plan = {"version": 1, "steps": list(steps), "output": output}
    path.write_text(json.dumps(plan))
    return str(path)


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("taskloom: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_run_without_redis_uses_the_embedded_cluster(tmp_path: Path, taskloom_home: Path) -> None:
    plan = plan_file(
        tmp_path,
        {"id": "a", "kind": "tool", "tool": "noop", "inputs": {"x": 3}},
        {"id": "b", "kind": "generate", "inputs": {"instruction": "say ${a.x}"}},
        output={"x": "$a.x", "text": "$b.text"},
    )
    done = taskloom(
        "run", plan, "--tools", TOOLS, "--model", "scripted", "--workers", "2", "--json"
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["output"] == {"x": 3, "text": "x"}
    assert all(s["worker"] not in ("", "inline") for s in record["steps"])
    inline = taskloom("run", plan, "--tools", TOOLS, "--model", "scripted", "--inline", "--json")
    assert inline.returncode != 0 or json.loads(inline.stdout)["steps"][0]["worker"] == "inline"


def test_submit_status_result_and_workers(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = plan_file(tmp_path, work("a"), work("b", after=["a"]), output="$b.value")
    args = ("--redis-url", redis_url)
    lonely = taskloom("submit", plan, "--input", json.dumps({"url": redis_url}), *args)
    assert lonely.returncode == 0
    assert "no live worker serves queue 'runs'" in lonely.stderr
    assert "no live worker serves queue 'slm'" in lonely.stderr
    first = lonely.stdout.strip()
    for waiting in ((), ("--wait", "--timeout", "0.5")):  # nobody serves it yet: still queued
        pending = taskloom("result", first, *waiting, *args)
        assert pending.returncode == 75, pending.stderr
        assert f"run {first} is still pending" in pending.stderr
    spawn_worker("--queue", "runs")
    spawn_worker()
    listed = taskloom("workers", *args)
    assert listed.returncode == 0 and "scripted" in listed.stdout and "runs" in listed.stdout
    got = taskloom("result", first, "--wait", "--timeout", "30", "--json", *args)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["output"] == 1
    status = taskloom("status", first, *args)
    assert status.returncode == 0 and f"run {first} done: 2/2 steps done" in status.stdout
    assert counts(redis_url, "test:executed") == {"a": 1, "b": 1}
    info = subprocess.run(
        [sys.executable, "-m", "rq.cli", "info", "--url", redis_url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert info.returncode == 0, info.stderr  # RQ's own tool reads our queues without error
    assert "slm" in info.stdout and "runs" in info.stdout


def test_cancel_stops_queued_and_running_steps(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = plan_file(tmp_path, work("slow", sleep_s=5.0), work("after", after=["slow"]))
    spawn_worker("--queue", "runs")
    spawn_worker()
    args = ("--redis-url", redis_url)
    run_id = taskloom("submit", plan, "--input", json.dumps({"url": redis_url}), *args)
    run_id = run_id.stdout.strip()
    wait_for(lambda: counts(redis_url, "test:started"), what="the slow step to start")
    cancelled = taskloom("cancel", run_id, *args)
    assert cancelled.returncode == 0 and "told 1 running to stop" in cancelled.stdout
    got = taskloom("result", run_id, "--wait", "--timeout", "20", *args)
    assert got.returncode == 1 and "cancelled" in got.stderr
    assert counts(redis_url, "test:executed") == {}  # the slow step was stopped, not finished
    assert "after" not in counts(redis_url, "test:started")
    # No step of the ended run is left `running`: the one that ran and the one that
    # never started are both cancelled, in the record and in the status table.
    shown = taskloom("status", run_id, "--json", *args)
    steps = {s["id"]: s["status"] for s in json.loads(shown.stdout)["steps"]}
    assert steps == {"slow": "cancelled", "after": "cancelled"}
    table = taskloom("status", run_id, *args).stdout
    assert "running" not in table and f"run {run_id} cancelled: 0/2 steps done" in table


def test_a_failed_step_fails_the_run_and_status_shows_the_dead_letter(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    bad = {
        "id": "bad",
        "kind": "tool",
        "tool": "broken",
        "inputs": {"url": "$input.url", "name": "bad"},
    }
    plan = plan_file(tmp_path, work("good"), bad)
    spawn_worker("--queue", "runs")
    spawn_worker()
    args = ("--redis-url", redis_url)
    run_id = taskloom("submit", plan, "--input", json.dumps({"url": redis_url}), *args)
    got = taskloom("result", run_id.stdout.strip(), "--wait", "--timeout", "30", *args)
    assert got.returncode == 1 and "hiccuped" in got.stderr
    status = taskloom("status", run_id.stdout.strip(), *args)
    assert "dead letters:" in status.stdout and "bad: RuntimeError" in status.stdout
    assert counts(redis_url, "test:executed") == {"good": 1, "bad": 3}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_bad_inputs_get_one_line_and_the_right_exit_code(
    tmp_path: Path, redis_url: str, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "worker", "--queue", "bad queue!", "--redis-url", redis_url)
    assert code == 2 and "queue name 'bad queue!' is not allowed" in one_error_line(err)
    code, _, err = cli(
        capsys, "worker", "--queue", "runs", "--queue", "slm", "--redis-url", redis_url
    )
    assert code == 2 and "can't be mixed" in one_error_line(err)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"redis://:secret@127.0.0.1:{s.getsockname()[1]}/0"
    plan = plan_file(tmp_path, {"id": "a", "kind": "tool", "tool": "noop"})
    for args in (("submit", plan), ("workers",), ("status", "x"), ("worker",), ("cancel", "x")):
        code, _, err = cli(capsys, *args, "--redis-url", dead_url)
        assert code == 3, (args, err)
        line = one_error_line(err)
        assert "127.0.0.1" in line and "secret" not in line
    code, _, err = cli(capsys, "status", "never-was", "--redis-url", redis_url)
    assert code == 2 and "no run 'never-was'" in one_error_line(err)
    code, _, err = cli(capsys, "submit", plan, "--redis-url", "http://localhost:6379")
    assert code == 2 and "must start with redis://" in one_error_line(err)
    code, _, err = cli(capsys, "run", plan, "--model", str(tmp_path / "nope.gguf"))
    assert code == 2 and "nope.gguf does not exist" in one_error_line(err)
    routed = plan_file(tmp_path, {"id": "a", "kind": "tool", "tool": "noop", "queue": "x y"})
    code, _, err = cli(capsys, "submit", routed, "--redis-url", redis_url)
    assert code == 2 and "x y" in one_error_line(err)


def test_redis_stopped_mid_run_exits_3_then_resume_finishes(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = plan_file(
        tmp_path,
        work("one"),
        work("two", sleep_s=0.5, after=["one"]),
        work("three", after=["two"]),
        output="$three.value",
    )
    spawn_worker()
    args = (
        "--redis-url",
        redis_url,
        "--run-id",
        "outage",
        "--input",
        json.dumps({"url": redis_url}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskloom.cli", "run", plan, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: counts(redis_url, "test:started").get("two"), what="step two to start")
    redis_server.stop()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        redis_server.start()
    assert proc.returncode == 3, err
    line = one_error_line(err)
    assert redis_url.split("/")[2] in line and "taskloom resume outage" in line
    resumed = taskloom("resume", "outage", "--redis-url", redis_url, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["output"] == 1
    executed = counts(redis_url, "test:executed")
    assert executed["one"] == 1 and executed["three"] == 1
    assert redis.Redis.from_url(redis_url).hget(key("merges", "outage"), "two") == b"1"


@pytest.mark.model
def test_a_worker_on_the_real_default_model(
    tmp_path: Path, redis_url: str, default_model_path: str, taskloom_home: Path
) -> None:
    plan = plan_file(
        tmp_path,
        {
            "id": "intent",
            "kind": "classify",
            "inputs": {"text": "Where is my parcel?", "labels": ["refund", "shipping"]},
        },
        output="$intent.label",
    )
    done = taskloom("run", plan, "--json", timeout_s=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["output"] in ("refund", "shipping")
    assert record["steps"][0]["model"] and record["steps"][0]["worker"] != "inline"


def test_progress_learns_which_worker_runs_each_step(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    from taskloom.config import Settings
    from taskloom.dispatch.broker import Broker
    from taskloom.views.status import running_workers

    plan = plan_file(tmp_path, work("slow", sleep_s=3.0))
    spawn_worker("--queue", "runs")
    spawn_worker("--name", "gpu7")
    run_id = taskloom(
        "submit", plan, "--input", json.dumps({"url": redis_url}), "--redis-url", redis_url
    ).stdout.strip()
    wait_for(lambda: counts(redis_url, "test:started"), what="the slow step to start")
    broker = Broker(redis_url, settings=Settings())
    assert running_workers(broker, run_id) == {"slow": "gpu7"}
    got = taskloom("result", run_id, "--wait", "--timeout", "30", "--redis-url", redis_url)
    assert got.returncode == 0, got.stderr
    assert running_workers(broker, run_id) == {}


def test_a_run_over_redis_is_visible_to_status_from_anywhere(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = plan_file(tmp_path, work("a"), output="$a.value")
    spawn_worker()
    args = ("--redis-url", redis_url)
    done = taskloom(
        "run",
        plan,
        "--tools",
        TOOLS,
        "--input",
        json.dumps({"url": redis_url}),
        "--run-id",
        "shared-run",
        *args,
    )
    assert done.returncode == 0, done.stderr
    status = taskloom("status", "shared-run", *args)
    assert status.returncode == 0 and "run shared-run done: 1/1 steps done" in status.stdout
