"""Tools that worker subprocesses load in the Redis tests (`--tools` this file)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import redis

from taskloom.tools import tool


@tool
def noop(x: int = 0) -> dict[str, int]:
    """Return the input: the cheapest possible step."""
    return {"x": x}


@tool
def work(url: str, name: str, sleep_s: float = 0.0, value: int = 0) -> dict[str, int]:
    """Count an execution of `name` in Redis, sleep, and return `value`."""
    r = redis.Redis.from_url(url)
    r.hincrby("test:started", name, 1)
    time.sleep(sleep_s)
    r.hincrby("test:executed", name, 1)
    return {"value": value}


@tool
def broken(url: str, name: str) -> dict[str, int]:
    """Count an execution, then fail in a way worth retrying."""
    redis.Redis.from_url(url).hincrby("test:executed", name, 1)
    raise RuntimeError("the backend hiccuped")


@tool
def poison(url: str, name: str) -> dict[str, int]:
    """Count an execution, then kill the worker running it (an OOM, say)."""
    redis.Redis.from_url(url).hincrby("test:started", name, 1)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def _log(path: str, line: str) -> None:
    """Append one line to an execution log outside Redis (O_APPEND: lines never mix)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@tool
def logged(log: str, name: str, sleep_s: float = 0.0, value: int = 0) -> dict[str, int]:
    """Log an execution of `name` to a file (not Redis), sleep, and return `value`."""
    _log(log, f"start {name}")
    time.sleep(sleep_s)
    _log(log, f"end {name}")
    return {"value": value}


@tool
def stubborn(log: str, name: str, sleep_s: float) -> dict[str, int]:
    """Sleep `sleep_s`, swallowing every interrupt: a tool that can't be stopped in place."""
    _log(log, f"start {name}")
    until = time.monotonic() + sleep_s
    while time.monotonic() < until:
        with contextlib.suppress(BaseException):  # the point: it ignores being told to stop
            time.sleep(max(0.0, until - time.monotonic()))
    _log(log, f"end {name}")
    return {"value": 1}


@tool
def fails_while(log: str, name: str, flag: str) -> dict[str, int]:
    """Log an execution; fail (not worth retrying) while the file `flag` exists."""
    _log(log, f"start {name}")
    if os.path.exists(flag):
        raise ValueError(f"{flag} is still there")
    return {"value": 1}


@tool
def gated(log: str, name: str, gate: str, wait_s: float = 60.0) -> dict[str, int]:
    """Log an execution, then hold the step until the file `gate` exists (or `wait_s`)."""
    _log(log, f"start {name}")
    until = time.monotonic() + wait_s
    while not os.path.exists(gate) and time.monotonic() < until:
        time.sleep(0.02)
    _log(log, f"end {name}")
    return {"value": 1}
