"""`taskloom runs`: this machine's runs and Redis's, newest first, filtered and limited."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from taskloom.cli import main
from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.step import StepStatus
from taskloom.workflows.record import RunRecord, RunStatus, StepRecord
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.store import MemoryRunStore, SqliteRunStore

TOOLS = str(Path(__file__).parent / "crashy_tools.py")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def record(run_id: str, status: RunStatus, age_s: float, *, flagged: int = 0) -> RunRecord:
    """A finished two-step run, `age_s` old, that cost $0.002, with `flagged` values not
    accepted by the calibration."""
    now = time.time()
    fields = {f"f{i}": {"value": "x", "confidence": 0.3, "accepted": False} for i in range(flagged)}
    steps = [
        StepRecord(id="a", kind="extract", status=StepStatus.DONE, cost_usd=0.001),
        StepRecord(
            id="b",
            kind="extract",
            status=StepStatus.DONE if status == RunStatus.DONE else StepStatus.FAILED,
            cost_usd=0.001,
            accepted=not flagged,
            meta={"fields": fields},
        ),
    ]
    r = RunRecord(run_id=run_id, status=status, target="plan.json", steps=steps)
    r.created_at, r.finished_at = now - age_s, now - age_s + 2.5
    r.tally()
    return r


def test_runs_lists_local_and_redis_runs_newest_first(
    redis_url: str, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = SqliteRunStore(Settings.from_env().state_path)
    local.save(record("local-old", RunStatus.DONE, 300))
    local.save(record("local-failed", RunStatus.FAILED, 100))
    local.close()
    shared = RedisRunStore(Broker(redis_url, settings=Settings()))
    shared.save(record("redis-new", RunStatus.DONE, 10, flagged=2))
    shared.save(record("redis-mid", RunStatus.FAILED, 200))

    code, out, err = cli(capsys, "runs", "--redis-url", redis_url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "STARTED",
        "STATUS",
        "STEPS",
        "TIME",
        "COST",
        "FLAGGED",
        "TARGET",
    ]
    assert [ln.split()[0] for ln in lines[1:]] == [
        "redis-new",
        "local-failed",
        "redis-mid",
        "local-old",
    ]
    newest = lines[1].split()
    assert newest[3:] == ["done", "2/2", "2.5s", "$0.002000", "2", "plan.json"]

    code, out, _ = cli(capsys, "runs", "--status", "failed", "--redis-url", redis_url)
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["local-failed", "redis-mid"]

    code, out, _ = cli(capsys, "runs", "--limit", "2", "--json", "--redis-url", redis_url)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["run_id"] for r in rows] == ["redis-new", "local-failed"]
    assert rows[0] | {"created_at": 0, "finished_at": 0} == {
        "run_id": "redis-new",
        "status": "done",
        "target": "plan.json",
        "created_at": 0,
        "finished_at": 0,
        "duration_s": 2.5,
        "steps_done": 2,
        "steps_total": 2,
        "cost_usd": 0.002,
        "flagged": 2,
    }

    code, out, _ = cli(capsys, "runs")  # no Redis configured: this machine's runs only
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["local-failed", "local-old"]


def test_a_local_run_is_listed_and_no_state_is_made_to_list_none(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLOOM_TEST_COUNTS", str(tmp_path / "counts"))
    assert cli(capsys, "runs") == (0, "no runs\n", "")
    assert not Settings.from_env().state_path.exists()
    plan = tmp_path / "plan.json"
    step = {"id": "a", "kind": "tool", "tool": "work", "inputs": {"name": "a"}}
    plan.write_text(json.dumps({"version": 1, "steps": [step], "output": "$a"}))
    code, _, err = cli(capsys, "run", str(plan), "--tools", TOOLS, "--inline")
    assert code == 0, err
    code, out, _ = cli(capsys, "runs", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["status"] == "done" and row["steps_done"] == row["steps_total"] == 1
    assert row["target"] == str(plan) and row["flagged"] == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--status", "finished"],
            "unknown run status 'finished'; use one of: pending, running, waiting, done, "
            "failed, cancelled",
        ),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_runs_options_exit_2_with_one_line(
    args: list[str], expected: str, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "runs", *args)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("taskloom: error:") and expected in err


def test_redis_lists_skip_expired_records_and_read_past_the_first_page(redis_url: str) -> None:
    store = RedisRunStore(Broker(redis_url, settings=Settings()))
    for i in range(60):
        store.save(record(f"run-{i:02d}", RunStatus.FAILED if i == 0 else RunStatus.DONE, 100 - i))
    store.broker.redis.delete("taskloom:run:run-59")  # expired: its index entry outlived it
    assert [r.run_id for r in store.recent(limit=2)] == ["run-58", "run-57"]
    assert [r.run_id for r in store.recent(status=RunStatus.FAILED)] == ["run-00"]


def test_the_memory_store_lists_as_the_real_ones_do() -> None:
    store = MemoryRunStore()
    for i, status in enumerate([RunStatus.DONE, RunStatus.FAILED, RunStatus.DONE]):
        store.save(record(f"run-{i}", status, 10 - i))
    assert [r.run_id for r in store.recent(limit=2)] == ["run-2", "run-1"]
    assert [r.run_id for r in store.recent(status=RunStatus.DONE)] == ["run-2", "run-0"]
