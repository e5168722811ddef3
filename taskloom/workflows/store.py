"""Where run records are kept: the RunStore Protocol, SQLite, a mirror, and an in-memory fake."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from taskloom.errors import RunNotFoundError
from taskloom.workflows.record import RunRecord, RunStatus, parse_record


class RunStore(Protocol):
    """Saves and loads run records by run id."""

    def save(self, record: RunRecord) -> None:
        """Write the record, replacing any earlier version."""
        ...

    def load(self, run_id: str) -> RunRecord:
        """The record of a run; raises RunNotFoundError if there is none."""
        ...


class SqliteRunStore:
    """Run records in a local SQLite file, next to the LangGraph checkpoints."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS taskloom_runs (run_id TEXT PRIMARY KEY, record TEXT)"
            )

    def save(self, record: RunRecord) -> None:
        data = record.model_dump_json()
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO taskloom_runs (run_id, record) VALUES (?, ?)",
                (record.run_id, data),
            )

    def load(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM taskloom_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise RunNotFoundError(
                f"no run {run_id!r} in this machine's local runs; "
                "check the id, or pass --redis-url for runs submitted to Redis",
                run_id=run_id,
            )
        return parse_record(row[0])

    def recent(self, *, status: RunStatus | None = None, limit: int = 20) -> list[RunRecord]:
        """Up to `limit` runs, newest first; only those in `status` when given."""
        wanted = status.value if status is not None else None
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM taskloom_runs"
                " WHERE ? IS NULL OR json_extract(record, '$.status') = ?"
                " ORDER BY json_extract(record, '$.created_at') DESC LIMIT ?",
                (wanted, wanted, limit),
            ).fetchall()
        return [parse_record(row[0]) for row in rows]

    def close(self) -> None:
        self._db.close()


class MirroredRunStore:
    """Saves to every store and loads from the first.

    A run started here over a shared Redis keeps its record in this machine's SQLite
    (for `resume`) and in Redis (so `taskloom status` works from any machine).
    """

    def __init__(self, *stores: RunStore) -> None:
        self.stores = stores

    def save(self, record: RunRecord) -> None:
        for store in self.stores:
            store.save(record)

    def load(self, run_id: str) -> RunRecord:
        return self.stores[0].load(run_id)


class MemoryRunStore:
    """Run records in a dict: the shipped fake, for tests and short-lived programs.

    Records are copied in and out, as a real store serializes them.
    """

    def __init__(self) -> None:
        self._records: dict[str, str] = {}
        self._lock = threading.Lock()

    def save(self, record: RunRecord) -> None:
        with self._lock:
            self._records[record.run_id] = record.model_dump_json()

    def load(self, run_id: str) -> RunRecord:
        with self._lock:
            data = self._records.get(run_id)
        if data is None:
            raise RunNotFoundError(f"no run {run_id!r} in this store; check the id")
        return RunRecord.model_validate_json(data)

    def recent(self, *, status: RunStatus | None = None, limit: int = 20) -> list[RunRecord]:
        """Up to `limit` runs, newest first; only those in `status` when given."""
        with self._lock:
            records = [RunRecord.model_validate_json(d) for d in self._records.values()]
        records = [r for r in records if status is None or r.status == status]
        return sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]
