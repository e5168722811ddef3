"""Reliability fixtures: real workers (spawn_worker), and a pickle scan after every test.

Every value each test leaves in Redis (jobs under `rq:job:*`, results, notices and
dead letters under `taskloom:*`) is scanned for a pickle before the per-test flush, so
the whole suite's traffic is checked, not one sample workload.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RedisServer
from tests.reliability.chaos import scan_for_pickle
from tests.workers.redis_helpers import spawn_worker

__all__ = ["spawn_worker"]


@pytest.fixture(autouse=True)
def no_pickle_in_redis(redis_server: RedisServer) -> Iterator[None]:
    """Fail a test that left any pickled value in Redis."""
    yield
    if redis_server._proc is None:
        redis_server.start()
    assert scan_for_pickle(redis_server.url) == []
