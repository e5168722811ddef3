"""Tools that worker subprocesses load in the Redis tests (`--tools` this file)."""

from __future__ import annotations

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
