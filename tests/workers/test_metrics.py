"""/metrics and /healthz on a box: the supervisor sums its children's metrics (multiprocess
mode), counting the steps of a real run; a port in use is bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

from taskloom.config import Settings
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepStatus
from tests.conftest import free_port
from tests.workers.redis_helpers import Spawn, spawn_worker, taskloom, wait_for
from tests.workers.supervisor_helpers import Supervise, kinds, metric, pids, supervise

__all__ = ["spawn_worker", "supervise"]
EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_count_the_steps_of_a_real_run_across_the_children(
    redis_url: str, supervise: Supervise
) -> None:
    port = free_port()
    supervise("--processes", "2", "--metrics-port", str(port), box="m1", ready=2)
    status, body = get(port, "/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    assert json.loads(body)["m1.cpu.0"] == "running"
    done = taskloom(
        "run",
        str(EXAMPLES / "triage.json"),
        "--input",
        f"@{EXAMPLES / 'triage_input.json'}",
        "--redis-url",
        redis_url,
        "--json",
        timeout_s=120,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    steps = record["steps"]
    by_kind: dict[str, float] = {}
    for s in steps:
        by_kind[s["kind"]] = by_kind.get(s["kind"], 0) + 1
    _, text = get(port, "/metrics")
    assert kinds(text, "taskloom_steps_finished_total") == by_kind
    attempts = sum(s["attempts"] for s in steps)
    assert metric(text, "taskloom_steps_started_total") == attempts
    assert metric(text, "taskloom_steps_failed_total") == attempts - len(steps)
    assert metric(text, "taskloom_step_run_seconds_count", queue="slm") == attempts
    assert metric(text, "taskloom_step_queue_wait_seconds_count") == attempts
    tokens = sum(s["prompt_tokens"] for s in steps)
    assert metric(text, "taskloom_tokens_total", type="prompt") == tokens
    assert metric(text, "taskloom_busy_sequences") == 0
    assert metric(text, "taskloom_model_load_seconds", model="scripted") >= 0
    assert "taskloom_lease_expiries_total" in text and "taskloom_requeues_total" in text


def test_counts_survive_a_child_restart_and_health_reports_it(
    redis_url: str, supervise: Supervise
) -> None:
    port = free_port()
    supervise("--processes", "1", "--metrics-port", str(port), box="m2", ready=1)
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    job = StepJob(run_id="m2", step_id="a", kind="tool", tool="noop", inputs={"x": 1})
    assert d.dispatch(job).status == StepStatus.DONE
    old = pids(redis_url, "m2")["m2.cpu.0"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: pids(redis_url, "m2").get("m2.cpu.0", old) != old, what="the restart")
    job2 = StepJob(run_id="m2", step_id="b", kind="tool", tool="noop", inputs={"x": 2})
    assert d.dispatch(job2).status == StepStatus.DONE
    _, text = get(port, "/metrics")
    assert metric(text, "taskloom_steps_finished_total", kind="tool", queue="slm") == 2


def test_a_standalone_worker_serves_its_own_metrics(redis_url: str, spawn_worker: Spawn) -> None:
    port = free_port()
    spawn_worker("--metrics-port", str(port))
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    for i in range(3):
        job = StepJob(run_id="m3", step_id=f"s{i}", kind="tool", tool="noop", inputs={"x": i})
        assert d.dispatch(job).status == StepStatus.DONE
    status, text = get(port, "/metrics")
    assert status == 200
    assert metric(text, "taskloom_steps_finished_total", kind="tool") == 3
    assert get(port, "/healthz")[0] == 200


def test_a_metrics_port_in_use_is_one_line_and_exit_2(redis_url: str, taskloom_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        base = ("worker", "--model", "scripted", "--redis-url", redis_url, "--metrics-port", port)
        for extra in ((), ("--processes", "1")):
            done = taskloom(*base, *extra)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and f"metrics port {port} can't be used" in lines[0]
