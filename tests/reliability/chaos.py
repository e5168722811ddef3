"""Helpers for the reliability tests: plans of counted steps, coordinators, memory."""

from __future__ import annotations

import bisect
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import accumulate
from pathlib import Path
from typing import Any

import redis

from taskloom.config import key
from tests.workers.redis_helpers import counts

DRIVE = str(Path(__file__).parent / "drive.py")


def work_step(
    step_id: str, url: str, *, sleep_s: float = 0.0, after: list[str] | None = None
) -> dict[str, Any]:
    """A `work` tool step (tests/workers/redis_tools.py): counts each execution in Redis."""
    step: dict[str, Any] = {
        "id": step_id,
        "kind": "tool",
        "tool": "work",
        "inputs": {"url": url, "name": step_id, "sleep_s": sleep_s, "value": len(step_id)},
    }
    if after:
        step["after"] = after
    return step


def fan_plan(n: int, url: str, *, sleep_s: float = 0.0, prefix: str = "s") -> dict[str, Any]:
    """`n` independent counted steps; the output lists every step's value."""
    ids = [f"{prefix}{i}" for i in range(n)]
    steps = [work_step(s, url, sleep_s=sleep_s) for s in ids]
    return {"version": 1, "steps": steps, "output": [f"${s}.value" for s in ids]}


def write_plan(path: Path, plan: dict[str, Any]) -> Path:
    path.write_text(json.dumps(plan))
    return path


def expected_output(plan: dict[str, Any]) -> list[int]:
    return [len(s["id"]) for s in plan["steps"]]


def merges(url: str, run_id: str) -> dict[str, int]:
    """How many times each step's result was merged (the broker's first-write counter)."""
    return {k: v for k, v in counts(url, key("merges", run_id)).items() if k != "_run"}


class Process(subprocess.Popen[str]):
    """A subprocess whose output goes to files, so a chatty one never blocks on a pipe."""

    def output(self, *, timeout_s: float) -> tuple[str, str]:
        """Wait for the exit; returns (stdout, stderr)."""
        self.wait(timeout=timeout_s)
        return self._out.read_text(), self._err.read_text()

    _out: Path
    _err: Path


@contextmanager
def process(cmd: list[str], *, env: dict[str, str] | None = None) -> Iterator[Process]:
    """A subprocess that is SIGKILLed on the way out if it is still running."""
    with tempfile.TemporaryDirectory(prefix="taskloom-proc-") as d:
        out, err = Path(d) / "out", Path(d) / "err"
        with out.open("w") as fo, err.open("w") as fe:
            proc = Process(cmd, stdout=fo, stderr=fe, text=True, env={**os.environ, **(env or {})})
        proc._out, proc._err = out, err
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


def kill_gaps(rng: random.Random, *, mean_s: float = 1.0) -> Iterator[float]:
    """Seconds between a chaos test's kills: uniform over [mean_s / 2, 3 * mean_s / 2].

    Not a fixed period. A dead worker's job is claimed again one lease after its claim
    (or its last heartbeat); with kills a fixed second apart (the sleep plus ~20 ms to
    kill and respawn) and the workers' 1 s lease, that new claim came just before the
    next kill: in 8 runs, 18 of 49 lost jobs were claimed again in the 30 ms before it
    (3% would be by chance), and each time the victim is their new worker one time in
    three. A job lost 3 times is dead-lettered as poison (`WorkerLostError`): that is
    the failure on record (`s0`, lost 3 times). At these gaps: 1 of 28 (6 runs).
    """
    while True:
        yield rng.uniform(mean_s / 2, mean_s * 3 / 2)


def redelivered_before_a_kill(gaps: list[float], *, lease_s: float, within_s: float) -> float:
    """The share of kills whose lost job, claimed again `lease_s` later, is claimed in the
    `within_s` before a kill (and so, if the job is short, is running when it comes)."""
    times = list(accumulate(gaps))
    hits: list[bool] = []
    for t in times:
        i = bisect.bisect_left(times, t + lease_s)  # the first kill after the new claim
        if i < len(times):
            hits.append(times[i] - (t + lease_s) <= within_s)
    return sum(hits) / max(1, len(hits))


def coordinator(*args: str) -> list[str]:
    """The command line of `taskloom ARGS` in this interpreter."""
    return [sys.executable, "-m", "taskloom.cli", *args]


def drive(plan: Path, url: str, run_id: str, concurrency: int = 64) -> list[str]:
    """The command line of a library-driven coordinator (see drive.py)."""
    return [sys.executable, DRIVE, str(plan), url, run_id, str(concurrency)]


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of a live process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def scan_for_pickle(url: str) -> list[str]:
    """Every key whose value (or hash/list field) looks like a pickle, zlib'd or not."""
    r = redis.Redis.from_url(url)
    hits: list[str] = []
    for name in r.scan_iter(count=1000):
        kind = r.type(name).decode()
        values: list[bytes] = []
        if kind == "string":
            values = [r.get(name) or b""]
        elif kind == "hash":
            values = list(r.hgetall(name).values())  # type: ignore[union-attr]
        elif kind == "list":
            values = list(r.lrange(name, 0, -1))  # type: ignore[arg-type]
        elif kind in ("set", "zset"):
            values = list(r.smembers(name) if kind == "set" else r.zrange(name, 0, -1))  # type: ignore[arg-type]
        if any(is_pickle(v) for v in values):
            hits.append(name.decode())
    return hits


def is_pickle(value: bytes) -> bool:
    """A pickle starts with PROTO (0x80) or is an old text pickle; RQ zlib-compresses its data."""
    import zlib

    if value[:1] == b"x":
        with suppress(zlib.error):
            value = zlib.decompress(value)
    return value[:1] == b"\x80" or value.startswith((b"(dp", b"(lp", b"cdill", b"c__builtin__"))
