"""The redis dispatcher against a real server and real worker subprocesses."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from taskloom.config import Settings, key
from taskloom.dispatch import payload
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.broker import Broker, safe_url
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.errors import ConfigError, RedisUnavailableError
from taskloom.step import StepJob, StepStatus
from tests.workers.redis_helpers import Spawn, counts, spawn_worker, wait_for

__all__ = ["spawn_worker"]


def tool_job(run_id: str, step_id: str, tool: str = "noop", **inputs: object) -> StepJob:
    return StepJob(run_id=run_id, step_id=step_id, kind="tool", tool=tool, inputs=inputs)


def dispatcher(url: str, **settings: object) -> RedisDispatcher:
    return RedisDispatcher(url=url, settings=Settings(redis_url=url, **settings))


def test_a_step_round_trips_and_is_merged_once(redis_url: str, spawn_worker: Spawn) -> None:
    spawn_worker()
    d = dispatcher(redis_url)
    assert isinstance(d, Dispatcher)
    result = d.dispatch(tool_job("r1", "a", x=7))
    assert result.status == StepStatus.DONE and result.value == {"x": 7}
    assert result.worker and result.queue_ms >= 0
    r = redis.Redis.from_url(redis_url)
    assert r.hget(key("merges", "r1"), "a") == b"1"
    # An SLM step runs on the worker's resident (scripted) model, on the `slm` queue.
    slm = d.dispatch(
        StepJob(run_id="r1", step_id="g", kind="generate", inputs={"instruction": "hi"})
    )
    assert slm.status == StepStatus.DONE and slm.model == "scripted"
    # A finished step is never queued again: the stored result comes back as-is.
    again = d.dispatch(tool_job("r1", "a", x=99))
    assert again.value == {"x": 7} and again.finished_at == result.finished_at
    d.close()


def test_a_retryable_failure_is_retried_then_dead_lettered(
    redis_url: str, spawn_worker: Spawn
) -> None:
    spawn_worker()
    d = dispatcher(redis_url, max_attempts=3, retry_backoff_s=0.05)
    result = d.dispatch(tool_job("r2", "bad", tool="broken", url=redis_url, name="bad"))
    assert result.status == StepStatus.FAILED
    assert result.attempts == 3 and result.error is not None and "hiccuped" in result.error.message
    assert counts(redis_url, "test:executed") == {"bad": 3}
    r = redis.Redis.from_url(redis_url)
    dead = json.loads(r.hget(key("dead", "r2"), "bad") or b"{}")
    assert dead["type"] == "RuntimeError"
    assert r.zcard(key("dead")) == 1 and r.zcard("rq:failed:slm") == 1


def test_a_duplicate_delivery_runs_once(redis_url: str, spawn_worker: Spawn) -> None:
    broker = Broker(redis_url, settings=Settings())
    job = tool_job("r3", "dup", tool="work", url=redis_url, name="dup", value=5)
    data = payload.encode("step", job.model_dump(mode="json"), max_attempts=1, secret=None)
    job_id, state, _, _ = broker.enqueue(
        queue="slm", data=data, run_id="r3", step_id="dup", description="dup"
    )
    assert state == "queued"
    r = redis.Redis.from_url(redis_url)
    r.rpush("rq:queue:slm", job_id)  # the same job delivered twice
    r.rpush(key("wake", "slm"), "1")
    proc = spawn_worker("--burst", ready=False)
    assert proc.wait(timeout=30) == 0
    assert counts(redis_url, "test:executed") == {"dup": 1}
    messages = [json.loads(m) for m in r.lrange(key("notify", "r3", "dup"), 0, -1)]
    assert len(messages) == 2 and all(m["final"] for m in messages)
    assert messages[0]["result"] == messages[1]["result"]
    assert r.hget(key("merges", "r3"), "dup") == b"1"


def test_a_bad_signature_is_dead_lettered_and_never_run(
    redis_url: str, spawn_worker: Spawn
) -> None:
    spawn_worker(env={"TASKLOOM_SECRET": "the-workers-secret"})
    d = dispatcher(redis_url, secret="another-secret")
    result = d.dispatch(tool_job("r4", "s", tool="work", url=redis_url, name="s"))
    assert result.status == StepStatus.FAILED
    assert result.error and result.error.type == "JobRejectedError"
    assert "TASKLOOM_SECRET" in result.error.message
    assert counts(redis_url, "test:started") == {}
    assert redis.Redis.from_url(redis_url).hexists(key("dead", "r4"), "s")
    # The same secret on both sides runs it.
    ok = dispatcher(redis_url, secret="the-workers-secret")
    assert ok.dispatch(tool_job("r4", "t")).status == StepStatus.DONE


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04\x95garbage-that-looks-like-a-pickle",
        json.dumps(["os.system", None, ["echo pwned"], {}]).encode(),
        json.dumps([payload.JOB_FUNC, None, [{"kind": "shell", "body": {}}], {}]).encode(),
    ],
    ids=["pickle", "other_function", "unknown_kind"],
)
def test_a_corrupt_payload_is_dead_lettered_never_executed(
    redis_url: str, spawn_worker: Spawn, data: bytes
) -> None:
    r = redis.Redis.from_url(redis_url)
    r.hset("rq:job:evil", mapping={"data": data, "origin": "slm", "status": "queued"})
    r.rpush("rq:queue:slm", "evil")
    r.rpush(key("wake", "slm"), "1")
    proc = spawn_worker("--burst", ready=False)
    assert proc.wait(timeout=30) == 0
    assert r.hget("rq:job:evil", "status") == b"failed"
    assert r.zscore("rq:failed:slm", "evil") is not None
    assert r.zscore(key("dead"), "evil") is not None


def test_illegal_queue_names_are_config_errors(redis_url: str) -> None:
    d = dispatcher(redis_url)
    job = StepJob(run_id="r", step_id="q", kind="tool", tool="noop", queue="bad queue!")
    with pytest.raises(ConfigError, match="queue name 'bad queue!' is not allowed"):
        d.dispatch(job)
    with pytest.raises(ConfigError):
        payload.check_queue("")
    assert payload.queue_name(None, "models/gemma-3-270m.gguf") == "slm:gemma-3-270m"


def test_unreachable_redis_names_the_url_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}") as e:
        Broker(url, settings=Settings()).ping()
    assert "hunter2" not in str(e.value) and time.monotonic() - started < 10
    assert safe_url(url) == f"redis://:***@127.0.0.1:{port}/0"
    with pytest.raises(ConfigError, match="must start with redis://"):
        Broker("http://localhost:6379", settings=Settings())


def test_payloads_are_json_and_signed() -> None:
    body = tool_job("r", "s").model_dump(mode="json")
    data = payload.encode("step", body, max_attempts=2, secret="k")
    func, instance, args, kwargs = json.loads(data)
    assert func == payload.JOB_FUNC and instance is None and kwargs == {}
    assert args[0]["kind"] == "step" and len(args[0]["sig"]) == 64
    envelope = payload.decode(data.encode(), secret="k")
    assert payload.step_job(envelope).step_id == "s" and envelope.max_attempts == 2
    tampered = data.replace('"noop"', '"work"')
    with pytest.raises(Exception, match="signature does not verify"):
        payload.decode(tampered.encode(), secret="k")
    unsigned = payload.encode("step", body, max_attempts=1, secret=None)
    with pytest.raises(Exception, match="not signed"):
        payload.decode(unsigned.encode(), secret="k")


def test_rq_tools_see_queues_and_workers(redis_url: str, spawn_worker: Spawn) -> None:
    from rq import Queue, Worker
    from rq.job import Job
    from rq.serializers import JSONSerializer

    spawn_worker("--queue", "slm", "--queue", "slm:extra")
    wait_for(lambda: Worker.all(connection=redis.Redis.from_url(redis_url)), what="rq workers")
    conn = redis.Redis.from_url(redis_url)
    (w,) = Worker.all(connection=conn)
    assert w.queue_names() == ["slm", "slm:extra"]
    broker = Broker(redis_url, settings=Settings())
    job = tool_job("r5", "v")
    data = payload.encode("step", job.model_dump(mode="json"), max_attempts=1, secret=None)
    conn.sadd(key("cancel", "other"), "x")  # unrelated keys don't disturb RQ
    job_id, _, _, _ = broker.enqueue(
        queue="slm:idle", data=data, run_id="r5", step_id="v", description="v"
    )
    assert {q.name for q in Queue.all(connection=conn)} >= {"slm", "slm:extra", "slm:idle"}
    fetched = Job.fetch(job_id, connection=conn, serializer=JSONSerializer)
    assert fetched.func_name == payload.JOB_FUNC and fetched.get_status() == "queued"
    assert Queue("slm:idle", connection=conn).count == 1


def test_a_password_protected_redis(tmp_path: Path) -> None:
    from tests.conftest import _server_binary, free_port

    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen(
        [_server_binary(), *args, "--requirepass", "s3cret"], stdout=subprocess.DEVNULL
    )
    try:
        good = Broker(f"redis://:s3cret@127.0.0.1:{port}/0", settings=Settings())
        wait_for(lambda: _pings(good), what="the server to start")
        _, state, _, _ = good.enqueue(
            queue="slm", data="[]", run_id="r", step_id="s", description="d"
        )
        claim = good.claim(["slm"], worker="w")
        assert state == "queued" and claim is not None and claim.step_id == "s"
        for url in (f"redis://:wrong@127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0"):
            with pytest.raises(ConfigError) as e:
                Broker(url, settings=Settings()).ping()
            assert "wrong" not in str(e.value) and str(port) in str(e.value)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _pings(broker: Broker) -> bool:
    try:
        broker.ping()
    except RedisUnavailableError:
        return False
    return True
