"""Dispatchers: how a ready step reaches a model and its result comes back.

- `Dispatcher` (`base`): the Protocol, and the one retry policy every dispatcher uses.
- `InlineDispatcher` (`inline`): steps run in this process; the shipped fake of a cluster.
- `RedisDispatcher` (`redis`): steps go to `taskloom worker` processes over RQ queues.
- `EmbeddedCluster` (`embedded`): a local server and local workers, like `ray.init()`.
- `connect(settings)` (`connection`): the one that the settings call for.

The Redis queue protocol, shared with the workers, is here too: `broker` (every job
transition is one Lua script in `scripts`) and `payload` (signed JSON envelopes).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.dispatch.base import Dispatcher
    from taskloom.dispatch.connection import connect
    from taskloom.dispatch.embedded import EmbeddedCluster
    from taskloom.dispatch.inline import InlineDispatcher
    from taskloom.dispatch.redis import RedisDispatcher

_WHERE = {
    "Dispatcher": "base",
    "EmbeddedCluster": "embedded",
    "InlineDispatcher": "inline",
    "RedisDispatcher": "redis",
    "connect": "connection",
}

__all__ = ["Dispatcher", "EmbeddedCluster", "InlineDispatcher", "RedisDispatcher", "connect"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'taskloom.dispatch' has no attribute {name!r}")
    return getattr(import_module(f"taskloom.dispatch.{_WHERE[name]}"), name)
