"""Redis clients from URLs: one Redis, or a master found through Redis Sentinel.

- `redis://`, `rediss://` (TLS), `unix://`: one server, as redis-py reads the URL.
- `redis+sentinel://[:password@]host:port[,host:port...]/<master>[/<db>]`: the master
  that the Sentinels at those addresses name, through redis-py's `Sentinel`; after a
  failover, new connections go to the promoted replica. The password is the master's
  (and its replicas'); the Sentinels themselves are asked without one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel

from taskloom.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis://", "rediss://", "unix://", f"{SENTINEL_SCHEME}://")


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    hosts = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{hosts}"))


def is_sentinel(url: str) -> bool:
    """Whether the URL names a master through Redis Sentinel."""
    return url.startswith(f"{SENTINEL_SCHEME}://")


def sentinel_url(sentinels: str, master: str) -> str:
    """The `redis+sentinel://` URL for `host:port,host:port` and a master name."""
    return f"{SENTINEL_SCHEME}://{sentinels}/{master}"


def open_redis(url: str, **options: Any) -> redis.Redis:
    """A client for the URL; `options` go to every connection (timeouts, retry, pool size).

    Raises:
        ConfigError: the URL has another scheme, or can't be read.
    """
    if not url.startswith(SCHEMES):
        raise ConfigError(
            f"Redis URL {safe_url(url)!r} must start with redis://, rediss://, unix:// "
            f"or {SENTINEL_SCHEME}://"
        )
    try:
        if not is_sentinel(url):
            return redis.Redis.from_url(url, **options)
        sentinels, master, db, password = _parse_sentinel(url)
    except ValueError as e:
        raise ConfigError(f"Redis URL {safe_url(url)!r} is not valid: {e}") from e
    pool_size = options.pop("max_connections", None)
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        sentinels,
        sentinel_kwargs={"socket_connect_timeout": options.get("socket_connect_timeout", 3.0)},
        **options,
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        master,
        password=password,
        db=db,
        **({"max_connections": pool_size} if pool_size else {}),
    )
    return client


def _parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {address!r} is not host:port")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("name the master after the addresses: .../<master>[/<db>]")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"database {path[1]!r} is not a number")
    password = unquote(parts.password) if parts.password is not None else None
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0, password
