"""Where LangGraph keeps a run's checkpoints: SQLite (the default) or PostgreSQL.

`Settings.checkpointer` (`TASKLOOM_CHECKPOINTER`, `--checkpointer`) is a URL:

- unset: the local `runs.sqlite` under `Settings.home`, next to the run records;
- `sqlite:///path/to/file.sqlite` (an absolute path after the third slash);
- `postgresql://user:password@host:port/db` (or `postgres://`), through
  `langgraph-checkpoint-postgres` (`pip install "taskloom[postgres]"`). Its tables are
  created on first use (`PostgresSaver.setup()`, which is idempotent).

Each finished step is one checkpoint, so a coordinator killed mid-run resumes from the
checkpointer without running its finished steps again (`taskloom resume RUN_ID`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from taskloom.config import Settings, checkpointer_scheme
from taskloom.errors import CheckpointerUnavailableError, ConfigError
from taskloom.logs import get_logger

log = get_logger(__name__)

__all__ = ["open_checkpointer", "safe_checkpointer_url", "sqlite_checkpointer"]


@contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    """LangGraph's SQLite checkpointer on a local file (WAL: one commit per step is cheap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[BaseCheckpointSaver[Any]]:
    """The checkpointer `settings.checkpointer` names (by default the local SQLite file).

    Raises:
        ConfigError: a URL of another scheme, or the postgres extra is not installed.
        CheckpointerUnavailableError: the PostgreSQL server can't be reached.
    """
    url = settings.checkpointer
    scheme = checkpointer_scheme(url) if url else "sqlite"
    if not url:
        with sqlite_checkpointer(settings.state_path) as saver:
            yield saver
    elif scheme == "sqlite":
        with sqlite_checkpointer(Path(url.split("://", 1)[1])) as saver:
            yield saver
    else:
        with _postgres(url) as saver:
            yield saver


@contextmanager
def _postgres(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError as e:
        raise ConfigError(
            f"a postgresql:// checkpointer needs langgraph-checkpoint-postgres; "
            f'pip install "taskloom[postgres]" ({e})'
        ) from e
    # psycopg reads libpq's `postgresql://` and `postgres://` both.
    try:
        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
            log.debug("checkpointer_opened", url=safe_checkpointer_url(url))
            yield saver
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointerUnavailableError(
            f"can't reach PostgreSQL at {safe_checkpointer_url(url)} ({first}); start it, "
            "or point TASKLOOM_CHECKPOINTER / --checkpointer at one that runs"
        ) from e


def safe_checkpointer_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
