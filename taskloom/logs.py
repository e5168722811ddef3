"""Loggers: structlog events that go through the standard library's `logging`.

So `logging.getLogger("taskloom")` controls them, and nothing prints unless the
application configures logging (the package adds a NullHandler). Each module has
`log = get_logger(__name__)` and logs one snake_case event per state transition with
key=value context. The CLI renders them (`-v`, `-vv`, `--log-json`).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog


class Event(dict[str, Any]):
    """An event on its way to `logging`: a dict for structlog's ProcessorFormatter, and
    `step_started run_id=… step_id=…` for a plain `logging.Formatter`."""

    def __str__(self) -> str:
        rest = " ".join(f"{k}={v}" for k, v in self.items() if k != "event")
        return f"{self.get('event', '')} {rest}".strip()


def _to_logging(logger: Any, method: str, event_dict: Any) -> Any:
    return (Event(event_dict),), {"extra": {"_logger": logger, "_name": method}}


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger over `logging.getLogger(name)`, independent of global config.

    Bound once (not a lazy proxy), so a call below the level costs one level check.
    """
    return structlog.stdlib.BoundLogger(
        logging.getLogger(name), [structlog.stdlib.filter_by_level, _to_logging], {}
    )
