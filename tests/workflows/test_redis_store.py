"""Run records in Redis: kept for a TTL; an unknown id says whether it expired or never was."""

from __future__ import annotations

import pytest

from taskloom.cli import main
from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.errors import RunNotFoundError
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.runner import new_run_id


def test_records_round_trip_with_their_ttl(redis_url: str) -> None:
    broker = Broker(redis_url, settings=Settings(record_ttl_s=3600))
    store = RedisRunStore(broker)
    record = RunRecord(run_id=new_run_id(), status=RunStatus.DONE, output={"x": 1})
    store.save(record)
    assert store.load(record.run_id).output == {"x": 1}
    assert 0 < broker.redis.ttl(f"taskloom:run:{record.run_id}") <= 3600


def test_unknown_ids_say_expired_or_never_existed(redis_url: str) -> None:
    store = RedisRunStore(Broker(redis_url, settings=Settings(record_ttl_s=3600)))
    with pytest.raises(RunNotFoundError, match=r"has expired from Redis .* kept 0\.0416667 days"):
        store.load("20200101-000000-abcdef")
    with pytest.raises(RunNotFoundError, match="no run 'typo' ever existed"):
        store.load("typo")


@pytest.mark.parametrize("command", ["status", "result", "show"])
def test_cli_unknown_run_exits_2(
    command: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--mermaid"] if command == "show" else []
    with pytest.raises(SystemExit) as e:
        main([command, "20200101-000000-abcdef", "--redis-url", redis_url, *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "has expired" in err and err.count("\n") == 1
