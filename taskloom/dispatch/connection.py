"""Choosing a dispatcher: the one place that decides where a run's steps go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taskloom.chat import check_model
from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.embedded import EmbeddedCluster
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.tools import ToolRegistry


@contextmanager
def connect(
    settings: Settings,
    *,
    is_inline: bool = False,
    workers: int = 1,
    tools: ToolRegistry | None = None,
    tool_specs: list[str] | None = None,
) -> Iterator[Dispatcher]:
    """The dispatcher the settings call for, open for the `with` block.

    - `is_inline`: steps run in this process, no Redis.
    - `settings.redis_url`: steps go to the workers serving that Redis.
    - otherwise the embedded default: a local Redis-compatible server and `workers`
      local worker processes, through the same RedisDispatcher as a real cluster.

    Args:
        settings: where to go, and the model the steps need.
        is_inline: run steps here.
        workers: local worker processes for the embedded default.
        tools: the Python tools inline steps may call.
        tool_specs: modules that local workers import for their tools.

    Raises:
        ModelFileError: `settings.model` names a file that won't load.
        RedisUnavailableError: the Redis can't be reached, or won't start.
    """
    dispatcher: Dispatcher
    if is_inline:
        check_model(settings)  # a bad path is the user's mistake: say so before any step
        dispatcher = InlineDispatcher(tools=tools, settings=settings)
        try:
            yield dispatcher
        finally:
            dispatcher.close()
        return
    if settings.redis_url:
        dispatcher = RedisDispatcher(settings=settings)
        try:
            dispatcher.broker.ping()
            yield dispatcher
        finally:
            dispatcher.close()
        return
    with EmbeddedCluster(settings, workers=workers, tool_specs=tool_specs) as cluster:
        dispatcher = RedisDispatcher(
            settings=cluster.settings, health=cluster.check, cluster=cluster
        )
        try:
            yield dispatcher
        finally:
            dispatcher.close()
