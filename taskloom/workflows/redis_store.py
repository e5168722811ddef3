"""Run records in Redis, for runs submitted to workers (any machine can read them)."""

from __future__ import annotations

import time
from functools import partial
from itertools import count
from typing import Any

from taskloom.config import key
from taskloom.dispatch.broker import Broker, safe_url
from taskloom.errors import RunNotFoundError
from taskloom.logs import get_logger
from taskloom.workflows.record import RunRecord, RunStatus, parse_record, run_age_s

log = get_logger(__name__)


class RedisRunStore:
    """Run records under `taskloom:run:<run_id>`, kept for `settings.record_ttl_s`.

    Saving a finished record also wakes `wait_finished` callers. Every saved run is
    listed in `taskloom:runs`, a sorted set scored by the time it was created, which
    `recent` reads newest first (entries past the TTL are trimmed as runs are saved).
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def save(self, record: RunRecord) -> None:
        data = record.model_dump_json()
        ttl_s = self.broker.ttl_s

        def write() -> None:
            with self.broker.redis.pipeline() as p:
                p.set(key("run", record.run_id), data, ex=ttl_s)
                p.zadd(key("runs"), {record.run_id: record.created_at})
                p.zremrangebyscore(key("runs"), "-inf", time.time() - ttl_s)
                p.expire(key("runs"), ttl_s)
                if record.status.is_final:
                    p.rpush(key("run_done", record.run_id), "1")
                    p.expire(key("run_done", record.run_id), 60)
                p.execute()

        self.broker.call(write)

    def load(self, run_id: str) -> RunRecord:
        data = self.broker.call(lambda: self.broker.redis.get(key("run", run_id)))
        if data is None:
            where = f"Redis at {safe_url(self.broker.url)}"
            age_s = run_age_s(run_id)
            if age_s is not None and age_s > self.broker.ttl_s:
                days = self.broker.ttl_s / 86400
                raise RunNotFoundError(
                    f"run {run_id!r} has expired from {where}: records are kept {days:g} days "
                    "(Settings.record_ttl_s)",
                    run_id=run_id,
                )
            raise RunNotFoundError(
                f"no run {run_id!r} ever existed in {where}; check the id and the --redis-url",
                run_id=run_id,
            )
        return parse_record(data)

    def recent(self, *, status: RunStatus | None = None, limit: int = 20) -> list[RunRecord]:
        """Up to `limit` runs, newest first; only those in `status` when given."""
        found: list[RunRecord] = []
        redis, page = self.broker.redis, max(limit, 50)
        for start in count(0, page):
            ids: Any = self.broker.call(
                partial(redis.zrevrange, key("runs"), start, start + page - 1)
            )
            if not ids:
                break
            rows: Any = self.broker.call(partial(redis.mget, [key("run", i.decode()) for i in ids]))
            records = [parse_record(row) for row in rows if row is not None]
            found += [r for r in records if status is None or r.status == status]
            if len(found) >= limit:
                break
        return found[:limit]

    def exists(self, run_id: str) -> bool:
        """Whether Redis holds a record for the run."""
        return bool(self.broker.call(lambda: self.broker.redis.exists(key("run", run_id))))

    def wait_finished(self, run_id: str, *, timeout_s: float | None = None) -> RunRecord:
        """Block until the run is done, failed or cancelled (or the timeout passes)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = self.load(run_id)
            if record.status.is_final:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                return record
            self.broker.call(lambda: self.broker.redis.blpop([key("run_done", run_id)], 1.0))
