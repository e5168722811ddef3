"""Redis failover through Sentinel: kill the master mid-run; the run completes.

Real servers (Debian's redis-server as master and replica, redis-sentinel), real
worker subprocesses and a coordinator subprocess, all on a `redis+sentinel://` URL.
Executions are counted from a log file, outside Redis.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.config import Settings, key
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.client import open_redis
from taskloom.errors import ConfigError
from tests.reliability.chaos import drive, process, write_plan
from tests.reliability.sentinel import SentinelCluster
from tests.workers.redis_helpers import TOOLS, executions, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel_cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    cluster.start()
    yield cluster
    cluster.stop()


def test_killing_the_master_mid_run_loses_no_acknowledged_result(
    tmp_path: Path, sentinel_cluster: SentinelCluster
) -> None:
    url = sentinel_cluster.url
    log = tmp_path / "executions.log"
    ids = [f"s{i}" for i in range(30)]
    steps: list[dict[str, Any]] = [
        {
            "id": s,
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": s, "sleep_s": 0.15, "value": i},
        }
        for i, s in enumerate(ids)
    ]
    plan = write_plan(
        tmp_path / "plan.json",
        {"version": 1, "steps": steps, "output": [f"${s}.value" for s in ids]},
    )
    env = {"TASKLOOM_LEASE_S": "2"}
    worker = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", url]
    worker += ["--model", "scripted", "--tools", TOOLS]
    with (
        process(worker, env=env),
        process(worker, env=env),
        process(drive(plan, url, "failover", 4), env=env) as coordinator,
    ):
        wait_for(lambda: len(executions(log, "end")) >= 8, timeout_s=60, what="8 steps")
        replica = sentinel_cluster.client("replica")
        # What the replica holds now is acknowledged: WAIT returned for it.
        kept = [s for s in ids if replica.exists(key("result", "failover", s))]
        sentinel_cluster.kill_master()
        out, err = coordinator.output(timeout_s=120)
    assert out.strip(), err[-3000:]
    record = json.loads(out.splitlines()[-1])["record"]
    assert record["status"] == "done", err
    assert record["output"] == list(range(30))
    assert sorted(s["id"] for s in record["steps"] if s["status"] == "done") == sorted(ids)
    ran = executions(log)
    assert all(ran.get(s, 0) >= 1 for s in ids)  # at least once
    assert len(kept) >= 4 and all(ran[s] == 1 for s in kept), (kept, ran)  # not run again
    promoted = sentinel_cluster.client("replica")
    assert all(promoted.exists(key("result", "failover", s)) for s in ids)


def test_sentinel_urls_and_settings(
    sentinel_cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker(sentinel_cluster.url, settings=Settings())
    broker.ping()
    assert broker.wait_replicas == 1  # WAIT for one replica on the writes that must survive
    sentinels = f"127.0.0.1:{sentinel_cluster.ports['sentinel']}"
    monkeypatch.setenv("TASKLOOM_REDIS_SENTINELS", sentinels)
    monkeypatch.setenv("TASKLOOM_REDIS_MASTER", "taskloom")
    settings = Settings.from_env()
    assert settings.redis_url == sentinel_cluster.url
    for bad in ("redis+sentinel://127.0.0.1:1", "redis+sentinel://nohost/m", "http://x"):
        with pytest.raises(ConfigError):
            open_redis(bad)
