"""Helpers for tests that run real worker subprocesses against the real test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker

TOOLS = str(Path(__file__).parent / "redis_tools.py")
Spawn = Callable[..., subprocess.Popen[bytes]]


def taskloom(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> Any:
    """Run the CLI in a subprocess; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "taskloom.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
    )


def wait_for(check: Callable[[], Any], *, timeout_s: float = 15.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def spawn_worker(redis_url: str, taskloom_home: Path) -> Iterator[Spawn]:
    """Start `taskloom worker` subprocesses (scripted model, test tools, 1 s lease)."""
    procs: list[subprocess.Popen[bytes]] = []
    broker = Broker(redis_url, settings=Settings())

    def spawn(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Any:
        cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", redis_url]
        if "--queue" not in args or "runs" not in args:
            cmd += ["--model", "scripted"]
        cmd += ["--tools", TOOLS, *args]
        environ = {**os.environ, "TASKLOOM_LEASE_S": "1", **(env or {})}
        before = {w["name"] for w in broker.live_workers()}
        proc = subprocess.Popen(cmd, env=environ, stderr=subprocess.PIPE)
        procs.append(proc)
        if ready:
            wait_for(
                lambda: {w["name"] for w in broker.live_workers()} - before,
                what="the worker to register",
            )
        return proc

    yield spawn
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        if p.stderr is not None:
            p.stderr.close()


def counts(url: str, name: str) -> dict[str, int]:
    """The per-step counters the test tools keep (`test:started`, `test:executed`)."""
    raw: dict[bytes, bytes] = redis.Redis.from_url(url).hgetall(name)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def executions(log: Path, what: str = "start") -> dict[str, int]:
    """How often each step's tool ran, from the execution log the test tools append to
    (a file, so it counts executions independently of anything in Redis)."""
    found: dict[str, int] = {}
    if not log.exists():
        return found
    for line in log.read_text().splitlines():
        event, name, _pid = line.split()
        if event == what:
            found[name] = found.get(name, 0) + 1
    return found
