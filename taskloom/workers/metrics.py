"""Prometheus metrics of a box's workers, and the HTTP server for /metrics and /healthz.

A standalone `taskloom worker --metrics-port P` serves its own metrics. Under a
supervisor, each child writes its metrics to files in a folder the supervisor owns
(`PROMETHEUS_MULTIPROC_DIR`, prometheus-client's multiprocess mode), and the supervisor
serves their sum on one port per box. Each metric is described in docs/operations.md.

Step metrics carry the labels `queue`, `kind` (the step's kind) and `model`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from taskloom.dispatch import payload
from taskloom.dispatch.broker import Claim
from taskloom.errors import ConfigError
from taskloom.logs import get_logger
from taskloom.step import StepResult, StepStatus
from taskloom.workers.handlers import Handler

log = get_logger(__name__)

STEP_LABELS = ("queue", "kind", "model")
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TOKENS_PER_S_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

Health = Callable[[], tuple[bool, dict[str, Any]]]


class WorkerMetrics:
    """The metrics one worker process records (see docs/operations.md for each).

    Args:
        registry: where they are registered; under a supervisor their values go to
            the multiprocess folder whatever the registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = STEP_LABELS) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.started = counter("taskloom_steps_started", "Steps a worker started.")
        self.finished = counter("taskloom_steps_finished", "Steps that finished (done).")
        self.failed = counter("taskloom_steps_failed", "Step attempts that failed.")
        self.run_s = Histogram(
            "taskloom_step_run_seconds",
            "A step attempt's run time.",
            STEP_LABELS,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.queue_s = Histogram(
            "taskloom_step_queue_wait_seconds",
            "Time from a step's enqueue to its start on a worker.",
            STEP_LABELS,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.tokens = counter(
            "taskloom_tokens", "Tokens of finished attempts.", (*STEP_LABELS, "type")
        )
        self.tokens_per_s = Histogram(
            "taskloom_step_tokens_per_second",
            "Completion tokens per second of run time, per step attempt.",
            STEP_LABELS,
            buckets=TOKENS_PER_S_BUCKETS,
            registry=registry,
        )
        self.busy = Gauge(
            "taskloom_busy_sequences",
            "Steps running now (sequences decoding together on the model).",
            ("model",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.lease_expiries = counter(
            "taskloom_lease_expiries",
            "Leases this worker's heartbeat found expired (jobs of a dead or stuck worker).",
            (),
        )
        self.requeues = counter(
            "taskloom_requeues",
            "Jobs put back on their queue after their lease expired.",
            (),
        )
        self.dead_letters = counter(
            "taskloom_dead_letters",
            "Jobs dead-lettered after their lease expired on their last attempt.",
            (),
        )
        self.escalations = counter(
            "taskloom_escalations",
            "SLM steps a run's coordinator re-ran on the LLM, by the step's kind and how "
            "the escalation ended (done, failed, skipped).",
            ("kind", "status"),
        )
        self.load_s = Gauge(
            "taskloom_model_load_seconds",
            "How long the worker took to load its model.",
            ("model",),
            multiprocess_mode="max",
            registry=registry,
        )

    def observe(self, handler: Handler, *, model: str) -> Handler:
        """`handler`, recording each step it runs."""

        def handle(envelope: payload.Envelope, claim: Claim) -> StepResult:
            labels = {"queue": claim.queue, "kind": str(envelope.body.get("kind", "?"))}
            labels["model"] = model
            self.started.labels(**labels).inc()
            busy = self.busy.labels(model=model)
            busy.inc()
            started = time.perf_counter()
            try:
                result = handler(envelope, claim)
            except Exception:
                self.failed.labels(**labels).inc()
                self.run_s.labels(**labels).observe(time.perf_counter() - started)
                raise
            finally:
                busy.dec()
            self.record(result, labels)
            return result

        return handle

    def record(self, result: StepResult, labels: dict[str, str]) -> None:
        """Count one attempt's outcome, times and tokens."""
        if result.status == StepStatus.DONE:
            self.finished.labels(**labels).inc()
        elif result.status == StepStatus.FAILED:
            self.failed.labels(**labels).inc()
        run_s = result.run_ms / 1000
        self.run_s.labels(**labels).observe(run_s)
        self.queue_s.labels(**labels).observe(result.queue_ms / 1000)
        self.tokens.labels(**labels, type="prompt").inc(result.prompt_tokens)
        self.tokens.labels(**labels, type="completion").inc(result.completion_tokens)
        if result.completion_tokens and run_s > 0:
            self.tokens_per_s.labels(**labels).observe(result.completion_tokens / run_s)

    def leases_expired(self, *, requeued: int, dead: int) -> None:
        """Count what the heartbeat found: jobs re-queued and dead-lettered."""
        self.lease_expiries.inc(requeued + dead)
        self.requeues.inc(requeued)
        self.dead_letters.inc(dead)

    def escalated(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Count a run's escalations (entries of its record's `escalations`)."""
        for entry in entries:
            kind, status = str(entry.get("kind", "?")), str(entry.get("status", "?"))
            self.escalations.labels(kind=kind, status=status).inc()

    def model_loaded(self, model: str, load_s: float) -> None:
        self.load_s.labels(model=model).set(load_s)


class MetricsServer:
    """/metrics (Prometheus text) and /healthz (JSON; 200 healthy, else 503) on one port.

    Args:
        port: the TCP port, on every interface.
        collect: the registry to expose.
        health: (healthy, details) for /healthz.

    Raises:
        ConfigError: the port is in use (or can't be bound).
    """

    def __init__(self, port: int, *, collect: CollectorRegistry, health: Health) -> None:
        def respond(handler: BaseHTTPRequestHandler, code: int, body: bytes, kind: str) -> None:
            handler.send_response(code)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    respond(self, 200, generate_latest(collect), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    is_ok, details = health()
                    body = json.dumps({"ok": is_ok, **details}).encode()
                    respond(self, 200 if is_ok else 503, body, "application/json")
                else:
                    respond(self, 404, b"try /metrics or /healthz\n", "text/plain")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the log

        try:
            self._server = ThreadingHTTPServer(("", port), Handler)
        except OSError as e:
            raise ConfigError(
                f"metrics port {port} can't be used ({e.strerror}); "
                "pick a free one with --metrics-port"
            ) from e
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics_serving", port=self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
