"""The broker: taskloom's jobs in Redis, laid out the way RQ lays out its own.

Every state transition of a job is one Lua script (see `scripts.py`). The dispatcher
and the worker both talk to Redis only through this class, and every Redis failure
becomes `RedisUnavailableError`, naming the URL (password hidden).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha1
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, Field
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from taskloom.config import Settings, key
from taskloom.dispatch import scripts
from taskloom.dispatch.client import is_sentinel, open_redis
from taskloom.dispatch.client import safe_url as safe_url  # re-exported: callers use it
from taskloom.errors import ConfigError, RedisUnavailableError
from taskloom.logs import get_logger
from taskloom.step import StepResult

log = get_logger(__name__)

T = TypeVar("T")
RUN_STEP = "_run"  # the step id a submitted run's coordinator job is filed under
FINISHED_JOB_TTL_S = 3600  # a finished job's hash and notices; results keep record_ttl_s
MAX_CONNECTIONS = 10_000  # per Broker: one per step in flight, plus the heartbeat's
WAIT_TIMEOUT_MS = 2000  # how long a durable write waits for its replicas
UNREPLICATED_RETRY_S = 10.0  # after a WAIT that timed out, try WAIT again this much later
FAILOVER_S = 30.0  # how long a Sentinel client keeps retrying while a replica is promoted


def rq_time(at: float | None = None) -> str:
    """A timestamp in RQ's format (UTC, microseconds, trailing Z)."""
    at = time.time() if at is None else at
    whole = int(at)
    micros = min(999_999, int((at - whole) * 1_000_000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


class Notice(BaseModel):
    """What a worker pushes to a step's notify list: an attempt's outcome."""

    job_id: str = ""
    final: bool = Field(False, description="the step's final result (first write wins)")
    cancelled: bool = Field(False, description="the run was cancelled before it was queued")
    result: StepResult | None = None


@dataclass(frozen=True)
class Claim:
    """A job a worker took from a queue, with its lease."""

    job_id: str
    data: bytes
    queue: str
    run_id: str
    step_id: str
    deliveries: int
    state: str  # run | cancelled | duplicate
    lost_by: str = ""
    """The workers that lost this job before (their lease ran out), and when:
    `name at time, name at time`."""

    def losses(self) -> list[str]:
        """Why this job was delivered again, one line per lost delivery."""
        return [
            f"worker {name} lost it (its lease expired) at {when}"
            for name, _, when in (part.rpartition(" at ") for part in self.lost_by.split(", "))
            if name
        ]


class Broker:
    """Jobs, results, leases and workers in one Redis.

    Args:
        url: `redis://`, `rediss://` (TLS), `unix://` or `redis+sentinel://` (see
            `taskloom.dispatch.client`), with an optional password.
        settings: leases, attempts and how long results are kept.
        client_name: the connections' name in Redis's CLIENT LIST.
    """

    def __init__(self, url: str, *, settings: Settings, client_name: str = "taskloom") -> None:
        self.url = url
        self.settings = settings
        self.ttl_s = settings.record_ttl_s
        self.is_sentinel = is_sentinel(url)
        replicas = settings.redis_wait_replicas
        self.wait_replicas = (1 if self.is_sentinel else 0) if replicas is None else replicas
        # A failover takes seconds (the Sentinels agree the master is down, then promote
        # a replica): a Sentinel client rides it out; a plain one reports the outage fast.
        self.retry_s = FAILOVER_S if self.is_sentinel else 0.25
        self._unreplicated_until = 0.0  # until then, WAIT is skipped (no replica answered)
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)
        # Each step a dispatcher waits on holds a connection in BLPOP, so redis-py's
        # default cap of 100 would starve a coordinator (and its heartbeat) past
        # 100 steps in flight; Redis's own default limit is 10,000 clients.
        self.redis = open_redis(
            url,
            socket_connect_timeout=3.0,
            retry=retry,
            health_check_interval=0,
            max_connections=MAX_CONNECTIONS,
            client_name=client_name,  # who is who in CLIENT LIST (and bench_load's counts)
        )
        self._sources = {name: scripts.script(body) for name, body in scripts.ALL.items()}
        self._shas = {name: sha1(src.encode()).hexdigest() for name, src in self._sources.items()}

    # -- errors -----------------------------------------------------------------------

    @contextmanager
    def reachable(self) -> Iterator[None]:
        """Map Redis failures: unreachable → RedisUnavailableError, bad password → ConfigError."""
        try:
            yield
        except redis.AuthenticationError as e:  # a ConnectionError subclass: check it first
            raise ConfigError(
                f"Redis at {safe_url(self.url)} refused the credentials ({e}); "
                "fix the password in TASKLOOM_REDIS_URL / --redis-url"
            ) from e
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as e:
            raise RedisUnavailableError(
                f"can't reach Redis at {safe_url(self.url)} ({e}); start it, or point "
                "TASKLOOM_REDIS_URL / --redis-url at one that runs"
            ) from e

    def call(self, fn: Callable[[], T]) -> T:
        """Run Redis operations, loading our scripts if the server lost them (a restart
        or a failover); under Sentinel, retried until a master answers again."""
        deadline = time.monotonic() + self.retry_s
        delay_s = 0.05
        with self.reachable():
            while True:
                try:
                    try:
                        return fn()
                    except redis.exceptions.NoScriptError:
                        self._load_scripts()
                        return fn()
                except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as e:
                    if isinstance(e, redis.AuthenticationError) or time.monotonic() > deadline:
                        raise
                    time.sleep(delay_s)
                    delay_s = min(delay_s * 2, 1.0)

    def _load_scripts(self) -> None:
        with self.redis.pipeline(transaction=False) as p:
            for source in self._sources.values():
                p.script_load(source)
            p.execute()

    def _script(self, client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA one of our scripts; on a pipeline, queue it (no SCRIPT EXISTS trip)."""
        return client.evalsha(self._shas[name], len(keys), *keys, *args)

    def _cmd(self, name: str, args: list[Any]) -> tuple[Any, ...]:
        """An EVALSHA of one of our key-less hot-path scripts."""
        return ("EVALSHA", self._shas[name], 0, *args)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands in one round trip on a pooled connection; replies in order.

        This skips redis-py's client and pipeline layers, which cost more CPU than the
        whole Lua script on the hot path. A broken connection is retried twice (an
        enqueue sent twice is a duplicate delivery, which the exactly-once merge absorbs).
        """
        pool = self.redis.connection_pool
        deadline = time.monotonic() + self.retry_s
        with self.reachable():
            for attempt in range(1_000):
                conn: Any = None
                try:
                    conn = pool.get_connection()  # connects: may fail too, mid-failover
                    conn.send_packed_command(conn.pack_commands(commands))
                    return [conn.read_response() for _ in commands]
                except redis.exceptions.NoScriptError:
                    conn.disconnect()  # replies may still be pending on it
                    self._load_scripts()
                    if attempt >= 3:
                        raise redis.ConnectionError("Redis keeps losing our scripts") from None
                except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as e:
                    if conn is not None:
                        conn.disconnect()
                    is_auth = isinstance(e, redis.AuthenticationError)
                    if is_auth or (attempt >= 2 and time.monotonic() > deadline):
                        raise
                    time.sleep(min(0.05 * 4**attempt, 1.0))
                except BaseException:
                    if conn is not None:
                        conn.disconnect()
                    raise
                finally:
                    if conn is not None:
                        pool.release(conn)
            raise redis.ConnectionError("Redis keeps failing")

    def _durable(self, commands: list[tuple[Any, ...]], *, what: str) -> list[Any]:
        """Send commands whose writes must survive a failover: WAIT for the replicas.

        With `wait_replicas` = 0 (one Redis, no Sentinel) this is `_send`. A write that
        reached fewer replicas in time is logged; it stands on the master alone.
        """
        if not self.wait_replicas or time.monotonic() < self._unreplicated_until:
            return self._send(commands)
        replies = self._send([*commands, ("WAIT", self.wait_replicas, WAIT_TIMEOUT_MS)])
        if int(replies[-1]) < self.wait_replicas:
            # No replica to wait for (e.g. the only one was just promoted): waiting the
            # whole timeout on every step would keep nothing more, so skip WAIT a while.
            self._unreplicated_until = time.monotonic() + UNREPLICATED_RETRY_S
            log.warning("write_not_replicated", what=what, replicas=int(replies[-1]))
        return replies[:-1]

    def ping(self) -> None:
        """Check that Redis answers."""
        self.call(self.redis.ping)

    # -- jobs -------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        queue: str,
        data: str,
        run_id: str,
        step_id: str,
        description: str,
        wait_s: float = 0.0,
    ) -> tuple[str, str, bytes | None, Notice | None]:
        """Queue a job unless the step already has a final `done` result.

        With `wait_s`, a BLPOP on the step's notify list rides in the same round trip,
        so a fast step's result comes back with the enqueue's reply.

        A step that already has a job queued or leased is not queued again: the caller
        gets that job's id with state `running`, and waits for it.

        Returns:
            (job_id, state, result, message): state is `queued`, `running`, `done` (result
            holds the stored StepResult JSON) or `cancelled`; message is the notice the
            BLPOP got.
        """
        job_id = uuid.uuid4().hex
        args: list[Any] = [job_id, data, rq_time(), queue, run_id, step_id, self.ttl_s, description]
        notify = key("notify", run_id, step_id)

        commands = [self._cmd("enqueue", args)]
        if wait_s > 0:
            commands.append(("BLPOP", notify, wait_s))
        replies = self._send(commands)
        state, result = replies[0]
        got = replies[1] if wait_s > 0 else None
        message = None if got is None else Notice.model_validate_json(got[1])
        if state == b"running":
            return result.decode(), "running", None, message
        return job_id, state.decode(), (result or None), message

    def probe(self, job_id: str, run_id: str, step_id: str) -> tuple[str, bytes]:
        """Where a job is now: `result` (with the step's result JSON), `outcome` (a
        settled attempt's result JSON), `leased`, `queued` (b"1" when a live worker
        serves the queue), or `gone` (with what its hash says: taken by something that is
        no taskloom worker, or lost, and the error RQ recorded)."""
        state, detail, *exc = self._send([self._cmd("probe", [job_id, run_id, step_id])])[0]
        if exc and exc[0]:
            detail = detail + b": " + _last_line(bytes(exc[0])).encode()
        return state.decode(), bytes(detail)

    def wait_notify(self, run_id: str, step_id: str, *, timeout_s: float) -> Notice | None:
        """The next notice about a step, or None on timeout."""
        got = self._send([("BLPOP", key("notify", run_id, step_id), timeout_s)])[0]
        return None if got is None else Notice.model_validate_json(got[1])

    def _claim_args(self, queues: list[str], worker: str) -> list[Any]:
        # The script starts the lease by the server's clock when it claims: a claim that
        # rides behind a BLPOP runs up to a whole wait after it was sent.
        lease_ms = int(self.settings.lease_s * 1000)
        return [worker, lease_ms, rq_time(), self.ttl_s, *queues]

    def claim(self, queues: list[str], *, worker: str) -> Claim | None:
        """Pop the next job from the first non-empty queue and lease it to `worker`."""
        args = self._claim_args(queues, worker)
        return _claim(self._send([self._cmd("claim", args)])[0])

    def wait_and_claim(self, queues: list[str], *, worker: str, timeout_s: float) -> Claim | None:
        """Block until a job may be waiting (a wake token), then claim, in one round trip.

        The claim is pipelined behind the BLPOP, so Redis runs it the moment the token
        arrives; if the worker dies in between, the job is still leased or queued.
        """
        args = self._claim_args(queues, worker)
        wake = [key("wake", q) for q in queues]

        return _claim(self._send([("BLPOP", *wake, timeout_s), self._cmd("claim", args)])[1])

    def finish(
        self,
        claim: Claim,
        *,
        result_json: str,
        is_final: bool,
        job_status: str,
        dead: dict[str, Any] | None = None,
        claim_next: list[str] | None = None,
        worker: str = "",
    ) -> tuple[bool, Claim | None]:
        """Record an attempt's outcome and wake the waiter; a final result is kept once.

        With `claim_next` (queues), the worker's next claim rides in the same round trip.

        Returns:
            (whether this call wrote the step's result, the next claim if asked for).
        """
        now = time.time()
        args: list[Any] = [
            claim.job_id,
            "1" if is_final else "0",
            result_json,
            self.ttl_s,
            claim.run_id,
            claim.step_id,
            job_status,
            rq_time(now),
            int(now),
            json.dumps({"job_id": claim.job_id, **dead}) if dead else "",
            claim.queue,
            min(FINISHED_JOB_TTL_S, self.ttl_s),
        ]
        if claim_next is None:
            return bool(self._durable([self._cmd("finish", args)], what="finish")[0]), None
        cargs = self._claim_args(claim_next, worker)
        commands = [self._cmd("finish", args), self._cmd("claim", cargs)]
        won, got = self._durable(commands, what="finish")
        return bool(won), _claim(got)

    def reject(self, job_id: str, *, error: str, message: str) -> None:
        """Dead-letter a job that must not run; its step (if known) fails with `message`."""
        keys = [f"rq:job:{job_id}", key("leases")]
        now = time.time()
        args: list[Any] = [job_id, error, message, int(now), self.ttl_s, rq_time(now)]
        self._durable([("EVALSHA", self._shas["reject"], len(keys), *keys, *args)], what="reject")

    def requeue(self, job_id: str) -> None:
        """Put a leased job back at the front of its queue (a worker draining)."""
        keys = [f"rq:job:{job_id}", key("leases")]
        self.call(lambda: self._script(self.redis, "requeue", keys, [job_id]))

    def heartbeat(self, worker_key: str, job_ids: list[str]) -> tuple[bool, int, int]:
        """Extend the leases of running jobs, and re-queue jobs whose lease ran out.

        Returns:
            (worker still registered, jobs re-queued, jobs dead-lettered).
        """
        now = time.time()
        lease_s = self.settings.lease_s
        args: list[Any] = [
            0,  # leases are measured on the server's clock (TIME), as claims set them
            int(lease_s * 1000),
            max(3, int(lease_s * 3)),
            rq_time(now),
            self.settings.max_attempts,
            self.ttl_s,
            int(now),
            *job_ids,
        ]
        keys = [key("leases"), worker_key]
        cmd = ("EVALSHA", self._shas["heartbeat"], len(keys), *keys, *args)
        alive, requeued, dead = self._durable([cmd], what="heartbeat")[0]
        return bool(alive), int(requeued), int(dead)

    def cancel(self, run_id: str) -> tuple[int, int]:
        """Cancel a run: drop its queued steps; running ones stop at the next heartbeat.

        Returns:
            (queued steps cancelled, steps still running).
        """
        keys = [key("cancel", run_id), key("jobs", run_id)]
        queued, running = self.call(
            lambda: self._script(self.redis, "cancel", keys, [self.ttl_s, RUN_STEP])
        )
        return int(queued), int(running)

    def is_cancelled(self, run_id: str) -> bool:
        """Whether `cancel` was called for the run."""
        return bool(self.call(lambda: self.redis.exists(key("cancel", run_id))))

    def uncancel(self, run_id: str) -> None:
        """Forget a cancellation (before a run is resumed)."""
        self.call(lambda: self.redis.delete(key("cancel", run_id)))

    def result(self, run_id: str, step_id: str) -> bytes | None:
        """A step's final StepResult JSON, if it has one."""
        value: Any = self.call(lambda: self.redis.get(key("result", run_id, step_id)))
        return None if value is None else bytes(value)

    # -- workers ----------------------------------------------------------------------

    def register_worker(self, name: str, queues: list[str], info: dict[str, Any]) -> str:
        """Register a worker where RQ looks for workers; returns its key."""
        worker_key = f"rq:worker:{name}"
        now = rq_time()
        fields: dict[Any, Any] = {"birth": now, "last_heartbeat": now, "queues": ",".join(queues)}
        fields |= {k: str(v) for k, v in info.items()}
        ttl = max(3, int(self.settings.lease_s * 3))

        def write() -> None:
            with self.redis.pipeline() as p:
                p.delete(worker_key)
                p.hset(worker_key, mapping=fields)
                p.expire(worker_key, ttl)
                p.sadd("rq:workers", worker_key)
                for q in queues:
                    p.sadd(f"rq:workers:{q}", worker_key)
                    p.sadd("rq:queues", f"rq:queue:{q}")
                p.execute()

        self.call(write)
        return worker_key

    def update_worker(self, worker_key: str, **fields: Any) -> None:
        """Set fields of a worker's registration (state, current job, counts)."""
        mapping: dict[Any, Any] = {k: str(v) for k, v in fields.items()}
        self.call(lambda: self.redis.hset(worker_key, mapping=mapping))

    def deregister_worker(self, worker_key: str, queues: list[str]) -> None:
        """Remove a worker from RQ's registries (its hash expires soon after)."""

        def write() -> None:
            with self.redis.pipeline() as p:
                p.srem("rq:workers", worker_key)
                for q in queues:
                    p.srem(f"rq:workers:{q}", worker_key)
                p.hset(worker_key, mapping={"death": rq_time(), "state": "dead"})
                p.expire(worker_key, 60)
                p.execute()

        self.call(write)

    def live_workers(self, queue: str | None = None) -> list[dict[str, str]]:
        """Registered workers whose registration has not expired (all, or one queue's)."""
        members: Any = self.call(
            lambda: self.redis.smembers(f"rq:workers:{queue}" if queue else "rq:workers")
        )
        names = sorted(m.decode() for m in members)
        with self.reachable(), self.redis.pipeline() as p:
            for name in names:
                p.hgetall(name)
            rows = p.execute()
        workers = []
        for name, row in zip(names, rows, strict=True):
            if row and b"death" not in row:
                data = {k.decode(): v.decode() for k, v in row.items()}
                workers.append({"name": name.removeprefix("rq:worker:"), **data})
        return workers

    def request_drain(self, worker_key: str) -> None:
        """Tell a worker to drain (`taskloom drain`): its heartbeat reads this field, and
        the worker finishes its steps, takes no more and exits 0."""
        self.call(lambda: self.redis.hset(worker_key, "drain", "1"))

    def is_drain_requested(self, worker_key: str) -> bool:
        """Whether `taskloom drain` asked this worker to drain."""
        return bool(self.call(lambda: self.redis.hexists(worker_key, "drain")))


def _claim(got: Any) -> Claim | None:
    if not got:
        return None
    job_id, data, queue, run_id, step_id, deliveries, state, lost_by = got
    return Claim(
        job_id=job_id.decode(),
        data=data,
        queue=queue.decode(),
        run_id=run_id.decode(),
        step_id=step_id.decode(),
        deliveries=int(deliveries),
        state=state.decode(),
        lost_by=lost_by.decode(),
    )


def _last_line(exc: bytes) -> str:
    """The line of a traceback that names the error (RQ may store it zlib'd and base64'd)."""
    with contextlib.suppress(ValueError, zlib.error):
        exc = zlib.decompress(base64.b64decode(exc, validate=True))
    lines = [line for line in exc.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
