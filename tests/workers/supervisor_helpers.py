"""Starting a real box supervisor (`taskloom worker --processes N`) against the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from tests.workers.redis_helpers import TOOLS, wait_for

Supervise = Callable[..., subprocess.Popen[str]]
FAST = {
    "TASKLOOM_LEASE_S": "1",
    "TASKLOOM_RESTART_BACKOFF_S": "0.05",
}


def live(url: str, prefix: str = "") -> dict[str, dict[str, str]]:
    """Live workers by name (those whose name starts with `prefix`)."""
    workers = Broker(url, settings=Settings()).live_workers()
    return {w["name"]: w for w in workers if w["name"].startswith(prefix)}


def is_gone(pid: int) -> bool:
    """Whether a process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


@pytest.fixture
def supervise(redis_url: str, taskloom_home: Path) -> Iterator[Supervise]:
    """Start supervisors of scripted workers; each is killed (children too) afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(
        *args: str,
        box: str = "box",
        env: dict[str, str] | None = None,
        ready: int = 0,
        model: str = "scripted",
    ) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", redis_url]
        cmd += ["--name", box, "--model", model, "--tools", TOOLS, *args]
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **FAST, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        if ready:
            wait_for(
                lambda: len(live(redis_url, f"{box}.")) >= ready,
                timeout_s=60,
                what=f"{ready} children to register",
            )
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)  # its children drain and exit (PDEATHSIG)
        p.wait(timeout=10)
        if p.stderr is not None:
            p.stderr.close()


def pids(url: str, box: str) -> dict[str, int]:
    """Each live child's pid, by name."""
    return {name: int(w["pid"]) for name, w in live(url, f"{box}.").items()}


def stderr_of(proc: subprocess.Popen[str], *, timeout_s: float = 30) -> tuple[int, str]:
    """Wait for a supervisor; its exit status and what it printed on stderr."""
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`, from /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def kinds(text: str, name: str) -> dict[str, float]:
    """A counter's samples summed by `kind`."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                kind = sample.labels["kind"]
                found[kind] = found.get(kind, 0.0) + sample.value
    return found
