"""Run records in Redis, for runs submitted to workers (any machine can read them)."""

from __future__ import annotations

import time

from taskloom.config import key
from taskloom.dispatch.broker import Broker, safe_url
from taskloom.errors import RunNotFoundError
from taskloom.logs import get_logger
from taskloom.workflows.record import RunRecord, parse_record, run_age_s

log = get_logger(__name__)


class RedisRunStore:
    """Run records under `taskloom:run:<run_id>`, kept for `settings.record_ttl_s`.

    Saving a finished record also wakes `wait_finished` callers.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def save(self, record: RunRecord) -> None:
        data = record.model_dump_json()
        ttl_s = self.broker.ttl_s

        def write() -> None:
            with self.broker.redis.pipeline() as p:
                p.set(key("run", record.run_id), data, ex=ttl_s)
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
