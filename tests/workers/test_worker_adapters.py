"""`taskloom workers` lists the LoRA adapters a worker's model has loaded (its heartbeat).

An in-process worker on the scripted model against the real test server; the model host's
`adapters` is stood in for by a list the test fills, as steps that asked would.
"""

from __future__ import annotations

import threading

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.workers.serve import build_worker
from tests.workers.redis_helpers import wait_for


def test_the_heartbeat_reports_the_adapters_loaded_so_far(
    redis_url: str, taskloom_home: object
) -> None:
    settings = Settings(redis_url=redis_url, model="scripted", lease_s=0.3)
    broker = Broker(redis_url, settings=settings)
    worker = build_worker(broker, settings=settings, queues=["adapters-test"], tool_specs=[])
    assert worker.loaded_adapters is not None and worker.loaded_adapters() == []
    loaded: list[str] = []
    worker.loaded_adapters = lambda: list(loaded)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: [w for w in broker.live_workers() if w.get("adapters") == ""],
            what="a heartbeat with no adapters",
        )
        loaded += ["extract.gguf", "intent.gguf"]
        found = wait_for(
            lambda: [
                w for w in broker.live_workers() if w.get("adapters") == "extract.gguf,intent.gguf"
            ],
            what="the heartbeat to list both adapters",
        )
        assert found[0]["name"] == worker.name
    finally:
        worker.stop()
        thread.join(timeout=30)
