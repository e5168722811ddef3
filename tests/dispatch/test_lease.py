"""A job's lease runs from the moment it is claimed, however long the claim waited."""

from __future__ import annotations

import threading
import time

import redis

from taskloom.config import Settings, key
from taskloom.dispatch.broker import Broker, Claim


def test_a_job_that_arrives_late_in_the_wait_gets_a_whole_lease(redis_url: str) -> None:
    """Many short waits; each job arrives near the end of the worker's 1 s BLPOP.

    The lease must be counted from the claim: another worker's heartbeat shortly after
    must not take a healthy job back (it did when the lease started before the wait).
    """
    settings = Settings(lease_s=1.0)
    broker = Broker(redis_url, settings=settings)
    r = redis.Redis.from_url(redis_url)
    other = broker.register_worker("other", ["slm"], {})
    for i in range(5):
        got: list[Claim | None] = []

        def wait(into: list[Claim | None] = got) -> None:
            into.append(broker.wait_and_claim(["slm"], worker="w", timeout_s=1.0))

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.8)  # the job arrives 0.8 s into the worker's 1 s wait
        broker.enqueue(queue="slm", data="[]", run_id="r", step_id=f"s{i}", description="d")
        waiter.join(timeout=5)
        claim = got[0]
        assert claim is not None and claim.step_id == f"s{i}"
        claimed_at_ms = time.time() * 1000
        lease_left_ms = float(r.zscore(key("leases"), claim.job_id) or 0) - claimed_at_ms
        assert lease_left_ms > 800, f"job {i}: only {lease_left_ms:.0f} ms of a 1 s lease"
        time.sleep(0.4)  # the heartbeat of another worker, well within the lease
        _, requeued, dead = broker.heartbeat(other, [])
        assert (requeued, dead) == (0, 0), f"job {i} was taken back after 0.4 s"
        assert r.hget(f"rq:job:{claim.job_id}", "status") == b"started"
        done = f'{{"run_id":"r","step_id":"s{i}","status":"done"}}'
        broker.finish(claim, result_json=done, is_final=True, job_status="finished")
