"""LangGraph checkpoints on a real PostgreSQL server (Debian's `postgresql` package).

The fixture starts its own server (initdb, then `postgres`) on a free port in a
temporary folder; as root, it runs the server as the `postgres` user, since PostgreSQL
refuses to run as root. A coordinator SIGKILLed mid-run resumes from PostgreSQL without
running its finished steps again; executions are counted in a file the tools append to.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.reliability.chaos import coordinator, process
from tests.workers.redis_helpers import TOOLS, Spawn, executions, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]

psycopg = pytest.importorskip("psycopg")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster: trust auth on 127.0.0.1, user `taskloom`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskloom-pg-"))
        self.url = f"postgresql://taskloom@127.0.0.1:{self.port}/postgres"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = self.dir / "data"
        subprocess.run(
            [
                *self.as_user,
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "taskloom",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(self.bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: a smart shutdown
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI needs Debian's postgresql package (.ci/run installs it)")
        pytest.skip("needs PostgreSQL's initdb and postgres (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()


def checkpoints_in_postgres(url: str, run_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (run_id,))
        return int(row.fetchone()[0])  # type: ignore[index]


def checkpoints_in_sqlite(path: Path, run_id: str) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(
                db.execute(
                    "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (run_id,)
                ).fetchone()[0]
            )
        except sqlite3.OperationalError:  # no checkpoints table: nothing was kept here
            return 0


def chain(tmp_path: Path, log: Path, gate: Path) -> Path:
    """first → held (waits for the gate file) → last."""
    steps: list[dict[str, Any]] = [
        {
            "id": "first",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": "first"},
        },
        {
            "id": "held",
            "kind": "tool",
            "tool": "gated",
            "after": ["first"],
            "inputs": {"log": str(log), "name": "held", "gate": str(gate)},
        },
        {
            "id": "last",
            "kind": "tool",
            "tool": "logged",
            "inputs": {"log": str(log), "name": "last", "value": "$held.value"},
        },
    ]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"version": 1, "steps": steps, "output": "$last.value"}))
    return path


def test_a_killed_local_run_resumes_from_postgres_without_rerunning_steps(
    tmp_path: Path, taskloom_home: Path, postgres: PostgresServer
) -> None:
    log, gate = tmp_path / "executions.log", tmp_path / "gate"
    plan = chain(tmp_path, log, gate)
    flags = ["--tools", TOOLS, "--checkpointer", postgres.url]
    cmd = coordinator("run", str(plan), "--inline", "--run-id", "pg1", *flags)
    with process(cmd) as run:
        wait_for(lambda: executions(log).get("held"), timeout_s=60, what="the held step")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert executions(log) == {"first": 1, "held": 1}
    assert executions(log, "end") == {"first": 1}  # killed in the middle of `held`
    assert checkpoints_in_postgres(postgres.url, "pg1") > 0

    gate.touch()
    resumed = taskloom("resume", "pg1", "--json", *flags, timeout_s=120)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "done" and record["output"] == 1
    assert executions(log) == {"first": 1, "held": 2, "last": 1}  # `first` did not run again
    # The checkpoints were PostgreSQL's: the local SQLite file holds none of this run.
    assert checkpoints_in_sqlite(taskloom_home / "runs.sqlite", "pg1") == 0


def test_a_runs_coordinator_killed_mid_run_goes_on_from_postgres(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn, postgres: PostgresServer
) -> None:
    log, gate = tmp_path / "executions.log", tmp_path / "gate"
    plan = chain(tmp_path, log, gate)
    spawn_worker()
    pg = ["--checkpointer", postgres.url]
    first = spawn_worker("--queue", "runs", *pg)
    submit = ("submit", str(plan), "--tools", TOOLS, "--redis-url", redis_url, "--run-id", "pg2")
    submitted = taskloom(*submit)
    assert submitted.returncode == 0, submitted.stderr
    wait_for(lambda: executions(log).get("held"), timeout_s=60, what="the held step")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert checkpoints_in_postgres(postgres.url, "pg2") > 0
    # The next coordinator logs at info level (-v), to show how it took the run up.
    cmd = coordinator("-v", "worker", "--queue", "runs", "--redis-url", redis_url, *pg)
    with process([*cmd, "--tools", TOOLS], env={"TASKLOOM_LEASE_S": "1"}) as second:
        gate.touch()
        done = taskloom("result", "pg2", "--wait", "--timeout", "90", "--redis-url", redis_url)
        assert done.returncode == 0, done.stderr
        second.send_signal(signal.SIGTERM)
        _, err = second.output(timeout_s=30)
    assert executions(log)["first"] == 1 and executions(log, "end")["last"] == 1
    assert "run_resuming" in err  # it went on from the run's checkpoint


@pytest.mark.parametrize(
    ("how", "why"),
    [
        (["--checkpointer", "mysql://db/x"], "neither sqlite:///PATH nor postgresql://"),
        (["--checkpointer", "sqlite://relative.db"], "absolute path"),
    ],
)
def test_a_bad_checkpointer_url_is_one_line_and_exit_2(
    tmp_path: Path, taskloom_home: Path, how: list[str], why: str
) -> None:
    plan = chain(tmp_path, tmp_path / "log", tmp_path / "gate")
    done = taskloom("run", str(plan), "--inline", "--tools", TOOLS, *how)
    assert done.returncode == 2, done.stderr
    assert why in done.stderr and done.stderr.count("\n") == 1
    env = {"TASKLOOM_CHECKPOINTER": how[1]}
    done = taskloom("run", str(plan), "--inline", "--tools", TOOLS, env=env)
    assert done.returncode == 2 and "TASKLOOM_CHECKPOINTER" in done.stderr
    assert done.stderr.count("\n") == 1


def test_an_unreachable_postgres_is_exit_3(tmp_path: Path, taskloom_home: Path) -> None:
    plan = chain(tmp_path, tmp_path / "log", tmp_path / "gate")
    url = f"postgresql://taskloom:secret@127.0.0.1:{free_port()}/postgres"
    done = taskloom("run", str(plan), "--inline", "--tools", TOOLS, "--checkpointer", url)
    assert done.returncode == 3, done.stderr
    assert "can't reach PostgreSQL" in done.stderr and "secret" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_without_the_postgres_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskloom.config import Settings
    from taskloom.errors import ConfigError
    from taskloom.workflows.checkpointer import open_checkpointer

    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.postgres", None)  # not installed
    settings = Settings(home=tmp_path, checkpointer="postgresql://u@127.0.0.1:1/db")
    needs = r'pip install "taskloom\[postgres\]"'
    with pytest.raises(ConfigError, match=needs), open_checkpointer(settings):
        pass
    sqlite = Settings(home=tmp_path, checkpointer=f"sqlite:///{tmp_path}/elsewhere.sqlite")
    with open_checkpointer(sqlite) as saver:
        assert type(saver).__name__ == "SqliteSaver"
    assert (tmp_path / "elsewhere.sqlite").exists()
