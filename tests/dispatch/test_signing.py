"""With TASKLOOM_SECRET set: the HMAC covers the whole job envelope, workers sign the
results they write, and the coordinator refuses a result it can't verify."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from taskloom.config import Settings, key
from taskloom.dispatch import payload
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import JobRejectedError
from taskloom.step import StepJob, StepResult, StepStatus
from tests.workers.redis_helpers import Spawn, spawn_worker, wait_for

__all__ = ["spawn_worker"]

SECRET = "the-shared-secret"


def job(step_id: str) -> StepJob:
    return StepJob(run_id="r", step_id=step_id, kind="tool", tool="noop", inputs={"x": 5})


def test_the_signature_covers_the_whole_envelope() -> None:
    data = payload.encode("step", job("s").model_dump(mode="json"), max_attempts=2, secret=SECRET)
    assert payload.decode(data.encode(), secret=SECRET).max_attempts == 2
    for before, after in [('"max_attempts":2', '"max_attempts":99'), ('"v":1', '"v":2')]:
        assert before in data
        with pytest.raises(JobRejectedError, match="signature does not verify"):
            payload.decode(data.replace(before, after).encode(), secret=SECRET)


def test_a_worker_signs_its_results_and_they_merge(redis_url: str, spawn_worker: Spawn) -> None:
    spawn_worker(env={"TASKLOOM_SECRET": SECRET})
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url, secret=SECRET))
    result = d.dispatch(job("signed"))
    d.close()
    assert result.status == StepStatus.DONE and result.value == {"x": 5}
    stored = StepResult.model_validate_json(
        redis.Redis.from_url(redis_url).get(key("result", "r", "signed")) or b"{}"
    )
    assert stored.sig and payload.is_verified(stored, SECRET)
    assert not payload.is_verified(stored.model_copy(update={"value": {"x": 6}}), SECRET)


@pytest.mark.parametrize("sig", [None, "0" * 64], ids=["unsigned", "bad_signature"])
def test_a_forged_result_is_refused_and_fails_the_step(
    redis_url: str, tmp_path: Path, sig: str | None
) -> None:
    r = redis.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url, secret=SECRET, max_attempts=1)
    d = RedisDispatcher(url=redis_url, settings=settings)
    results: list[StepResult] = []
    waiter = threading.Thread(target=lambda: results.append(d.dispatch(job("s"))), daemon=True)
    waiter.start()
    wait_for(lambda: r.hget(key("jobs", "r"), "s"), what="the job to be queued")
    job_id = (r.hget(key("jobs", "r"), "s") or b"").decode()
    forged = StepResult(run_id="r", step_id="s", status=StepStatus.DONE, value={"x": 666}, sig=sig)
    raw = forged.model_dump_json()
    r.set(key("result", "r", "s"), raw)  # written straight to Redis, as an attacker would
    r.rpush(
        key("notify", "r", "s"),
        json.dumps({"job_id": job_id, "final": True, "result": json.loads(raw)}),
    )
    waiter.join(timeout=10)
    (result,) = results
    assert result.status == StepStatus.FAILED and result.value is None
    assert result.error is not None and result.error.type == "JobRejectedError"
    assert "not signed with TASKLOOM_SECRET" in result.error.message
    # Asked again (a resume), the stored forgery is refused the same way.
    again = d.dispatch(job("s"))
    assert again.status == StepStatus.FAILED and again.value is None
    d.close()
