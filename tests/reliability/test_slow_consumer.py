"""Slow consumers: 1,000 queued steps drain through one slow worker.

Twenty submitted runs of 50 steps each are coordinated by one `runs` worker (one
process, so its memory is the coordinators' memory). Their 1,000 steps are all queued
before any SLM worker starts, then a single worker takes them one at a time. Memory
stays bounded on both sides, and a step that runs longer than the lease is not taken
for a dead worker's: the heartbeat extends its lease, so every step runs exactly once.

(Twenty runs rather than one of 1,000 steps: `taskloom run` caps plans at 64 steps,
and a `runs` worker is where many coordinators share one process and one connection
pool. This test found redis-py's 100-connection pool cap starving that pool.)
"""

from __future__ import annotations

import pytest
import redis

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.plan import load_plan
from taskloom.workflows import Workflow, submitted
from taskloom.workflows.record import RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from tests.reliability.chaos import fan_plan, merges, peak_rss_mb
from tests.workers.redis_helpers import Spawn, counts, wait_for

RUNS, STEPS = 20, 50  # 1,000 steps
LONG = {"s0", "s25"}  # in the first run: each runs 2.5 s, over twice the 1 s lease
COORDINATOR_MAX_MB = 800  # measured 253 MiB on 2 cores; generous for CI
WORKER_MAX_MB = 300  # measured 87 MiB


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_1000_queued_steps_on_one_slow_worker(redis_url: str, spawn_worker: Spawn) -> None:
    settings = Settings(redis_url=redis_url)
    broker = Broker(redis_url, settings=settings)
    coordinator = spawn_worker("--queue", "runs", "--concurrency", str(RUNS))
    run_ids = []
    for n in range(RUNS):
        plan = fan_plan(STEPS, redis_url, sleep_s=0.01, prefix=f"r{n}s")
        for step in plan["steps"]:
            if n == 0 and step["id"].removeprefix("r0") in LONG:
                step["inputs"]["sleep_s"] = 2.5
        workflow = Workflow.from_plan(load_plan(plan))
        run_ids.append(
            submitted.submit(workflow, {}, broker=broker, settings=settings, target="plan.json")
        )
    r = redis.Redis.from_url(redis_url)
    # no SLM worker yet: every step piles up in the queue, then one worker drains it
    wait_for(lambda: r.llen("rq:queue:slm") >= RUNS * STEPS, timeout_s=120, what="the backlog")
    worker = spawn_worker()
    store = RedisRunStore(broker)
    records = [store.wait_finished(run_id, timeout_s=200) for run_id in run_ids]
    coordinator_mb, worker_mb = peak_rss_mb(coordinator.pid), peak_rss_mb(worker.pid)
    assert [rec.status for rec in records] == [RunStatus.DONE] * RUNS
    for n, (run_id, record) in enumerate(zip(run_ids, records, strict=True)):
        ids = [f"r{n}s{i}" for i in range(STEPS)]
        assert record.output == [len(s) for s in ids]
        assert merges(redis_url, run_id) == dict.fromkeys(ids, 1)
        assert all(step.attempts == 1 for step in record.steps)
    started = counts(redis_url, "test:started")
    assert len(started) == RUNS * STEPS and set(started.values()) == {1}  # no spurious re-queue
    print(f"peak RSS: coordinator {coordinator_mb:.0f} MiB, worker {worker_mb:.0f} MiB")
    assert coordinator_mb < COORDINATOR_MAX_MB
    assert worker_mb < WORKER_MAX_MB
