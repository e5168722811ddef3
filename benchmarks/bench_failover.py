"""What WAIT costs per step: a step's round trip with and without waiting for a replica.

    python benchmarks/bench_failover.py [--steps 400] [--runs 20]

Real servers: Debian's `redis-server` as master, and one replica of it (what a Sentinel
deployment runs; the Sentinel itself takes no part in a step, so none is started).
Two `taskloom worker --model scripted` processes serve the master: one with
`TASKLOOM_REDIS_WAIT_REPLICAS=1` on queue `wait1` (every finish and dead letter WAITs
for the replica, as on Sentinel), one with `0` on queue `wait0`. One coordinator in this
process sends no-op tool steps to both queues in alternating batches, so both modes
see the same machine load, and it prints the p50 and mean round trip of each mode and
their ratio, then the throughput of `--runs` concurrent steps per mode.

Everything is on loopback on one machine: the replica's acknowledgement costs a
loopback round trip here, and more across a network.

Real: redis-server (master and replica), the worker processes, the dispatcher.
Simulated: step work (no-op tools; the model is the scripted fake). The last run's
numbers are in `benchmarks/results.json`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import results

from taskloom import Settings, StepJob
from taskloom.dispatch.redis import RedisDispatcher

TOOLS = str(Path(__file__).resolve().parent.parent / "tests" / "workers" / "redis_tools.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    folder.mkdir()
    binary = shutil.which("redis-server") or sys.exit("needs Debian's redis-server")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    return subprocess.Popen([binary, *args, *extra], stdout=subprocess.DEVNULL)


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def worker(url: str, queue: str, replicas: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", url, "--queue", queue]
    cmd += ["--model", "scripted", "--tools", TOOLS, "--parent-pid", str(os.getpid())]
    env = {**os.environ, "TASKLOOM_REDIS_WAIT_REPLICAS": str(replicas)}
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="sequential steps per mode")
    parser.add_argument("--runs", type=int, default=20, help="concurrent steps, per mode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as d:
        master_port, replica_port = free_port(), free_port()
        procs = [server(Path(d) / "master", master_port)]
        procs.append(
            server(Path(d) / "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port))
        )
        url = f"redis://127.0.0.1:{master_port}/0"
        replica = redis.Redis(port=replica_port)
        wait_until(lambda: replica.info("replication")["master_link_status"] == "up", "sync")
        procs += [worker(url, "wait1", 1), worker(url, "wait0", 0)]
        r = redis.Redis.from_url(url)
        wait_until(lambda: r.scard("rq:workers:wait1") and r.scard("rq:workers:wait0"), "workers")
        try:
            dispatcher = RedisDispatcher(url=url, settings=Settings(redis_url=url))
            latencies: dict[str, list[float]] = {"wait1": [], "wait0": []}

            def step(queue: str, i: int) -> float:
                job = StepJob(
                    run_id=f"bench-{queue}", step_id=f"s{i}", kind="tool", tool="noop", queue=queue
                )
                started = time.perf_counter()
                result = dispatcher.dispatch(job)
                assert result.status == "done", result.error
                return (time.perf_counter() - started) * 1000

            for i in range(20):  # warm both paths up
                step("wait1", -i - 1), step("wait0", -i - 1)
            batch = 20
            for start in range(0, args.steps, batch):  # alternate, so both see the same load
                for queue in ("wait1", "wait0"):
                    latencies[queue] += [step(queue, i) for i in range(start, start + batch)]
            throughput: dict[str, float] = {}
            for queue in ("wait1", "wait0"):
                began = time.perf_counter()
                with ThreadPoolExecutor(args.runs) as pool:
                    n = args.runs * 10
                    list(pool.map(lambda i, q=queue: step(q, 100_000 + i), range(n)))
                throughput[queue] = n / (time.perf_counter() - began)
            dispatcher.close()
        finally:
            for p in procs:
                p.send_signal(signal.SIGKILL)
                p.wait()

    p50 = {q: statistics.median(v) for q, v in latencies.items()}
    mean = {q: statistics.fmean(v) for q, v in latencies.items()}
    print(f"one no-op step's round trip, {args.steps} sequential steps per mode")
    print(f"  WAIT 1 replica   p50 {p50['wait1']:.2f} ms, mean {mean['wait1']:.2f} ms")
    print(f"  no WAIT          p50 {p50['wait0']:.2f} ms, mean {mean['wait0']:.2f} ms")
    print(f"  ratio (WAIT / no WAIT), p50 {p50['wait1'] / p50['wait0']:.2f}")
    print(f"  cost of WAIT     {p50['wait1'] - p50['wait0']:.2f} ms per step (p50)")
    print(f"{args.runs} steps in flight, one worker per mode")
    print(f"  WAIT 1 replica   {throughput['wait1']:.0f} steps/s")
    print(f"  no WAIT          {throughput['wait0']:.0f} steps/s")
    print(f"  ratio            {throughput['wait1'] / throughput['wait0']:.2f}")
    results.record(
        "bench_failover",
        real="redis-server master and replica, `taskloom worker` processes, the dispatcher",
        simulated="step work: no-op tools (the scripted model)",
        rows=[
            results.Row(
                what="WAIT for 1 replica on every finish (Sentinel's default)",
                measured=f"round trip p50 {p50['wait1']:.2f} ms vs {p50['wait0']:.2f} ms without "
                f"({p50['wait1'] / p50['wait0']:.2f}×, {p50['wait1'] - p50['wait0']:+.2f} ms); "
                f"one worker with {args.runs} steps in flight: {throughput['wait1']:.0f} vs "
                f"{throughput['wait0']:.0f} steps/s "
                f"({throughput['wait1'] / throughput['wait0']:.2f}×)",
                target="(report)",
                met=None,
            )
        ],
    )


if __name__ == "__main__":
    main()
