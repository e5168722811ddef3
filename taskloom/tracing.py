"""OpenTelemetry traces: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

With the `otel` extra installed (`pip install "taskloom[otel]"`) and the standard
variables set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `..._TRACES_ENDPOINT`;
`OTEL_SERVICE_NAME`, default `taskloom`; `OTEL_EXPORTER_OTLP_HEADERS` ...), each
process sends its spans over OTLP/HTTP:

- `run <target>`: one per run, where the run is coordinated;
- `step <id>`: one per step, on the coordinator, each attempt an `attempt` event;
- `execute <id>`: one per attempt, on the worker that ran it, a child of its step span
  through the W3C `traceparent` carried in the (signed) job envelope;
- `{gen_ai.operation.name} {gen_ai.request.model}`: one per model call, following the
  GenAI semantic conventions (kind INTERNAL for the resident SLM, CLIENT for an
  OpenAI-compatible endpoint).

An application that set up its own tracer provider keeps it: taskloom only adds spans.
When tracing is off, or the extra is missing (a warning says so once per process),
every function here does nothing and costs a dictionary lookup.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskloom.logs import get_logger
from taskloom.step import StepResult

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

log = get_logger(__name__)

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
OTEL_INSTALL = 'pip install "taskloom[otel]"'
Carrier = dict[str, str]
"""A W3C trace context as text: `traceparent` and, where set, `tracestate`."""


def is_on() -> bool:
    """Whether an OTLP endpoint is configured (tracing is then on where it can be)."""
    return any(os.environ.get(v) for v in ENDPOINT_VARS)


def tracer() -> Tracer | None:
    """The tracer taskloom's spans go to, or None when tracing is off."""
    return _tracer() if is_on() else None


@functools.cache
def _tracer() -> Tracer | None:
    """Set up the SDK once per process (unless the application already did)."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        log.warning("tracing_unavailable", missing=e.name, install=OTEL_INSTALL)
        return None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        service = os.environ.get("OTEL_SERVICE_NAME") or "taskloom"
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        log.info("tracing_started", service=service)
    return trace.get_tracer("taskloom")


def carrier() -> Carrier:
    """The current span's context, to send along with a job; empty when tracing is off."""
    if tracer() is None:
        return {}
    from opentelemetry import propagate

    out: Carrier = {}
    propagate.inject(out)
    return out


@contextmanager
def span(
    name: str,
    *,
    kind: str = "internal",
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span around the block, current inside it; None when tracing is off.

    Args:
        kind: `internal`, `client`, `server`, `producer` or `consumer`.
        parent: a carrier from another process (`carrier()`); default: the current span.
        attributes: set on the span; None values are left out.

    An exception leaving the block marks the span an error with `error.type`.
    """
    found = tracer()
    if found is None:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, Status, StatusCode

    context = propagate.extract(dict(parent)) if parent else None
    with found.start_as_current_span(
        name,
        context=context,
        kind=SpanKind[kind.upper()],
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        set_attributes(current, attributes or {})
        try:
            yield current
        except BaseException as e:
            current.set_attribute("error.type", type(e).__name__)
            current.set_status(Status(StatusCode.ERROR, str(e)[:200]))
            raise


@contextmanager
def attached(parent: Mapping[str, str] | None) -> Iterator[None]:
    """Make a carrier from another process the current context inside the block, so the
    spans started there are its children (nothing when tracing is off or it is empty)."""
    if not parent or tracer() is None:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(dict(parent)))
    try:
        yield
    finally:
        context.detach(token)


def set_attributes(current: Span | None, attributes: Mapping[str, Any]) -> None:
    """Set the attributes that have a value (OpenTelemetry takes no None)."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)


def result_attributes(result: StepResult) -> dict[str, Any]:
    """The `taskloom.` attributes of a step's result, and its usage."""
    return {
        "taskloom.status": result.status.value,
        "taskloom.attempts": result.attempts,
        "taskloom.worker": result.worker or None,
        "taskloom.model": result.model or None,
        "taskloom.confidence": result.confidence,
        "taskloom.accepted": result.accepted,
        # An escalated result is written by the LLM tier (`llm` or `llm+<slm worker>`).
        "taskloom.escalated": result.worker.startswith("llm") if result.worker else None,
        "taskloom.adapter": result.meta.get("adapter"),
        "gen_ai.usage.input_tokens": result.prompt_tokens,
        "gen_ai.usage.output_tokens": result.completion_tokens,
    }


def fail(current: Span | None, error_type: str, message: str = "") -> None:
    """Mark a span an error without an exception (a step that failed, a failed result)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR, message[:200]))


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span (nothing when tracing is off or no span is current)."""
    if tracer() is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, {k: v for k, v in attributes.items() if v is not None})


@contextmanager
def model_call(
    model: str,
    *,
    provider: str,
    operation: str = "chat",
    server: tuple[str, int] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> Iterator[Span | None]:
    """A GenAI span around one model call: `{operation} {model}`, kind CLIENT when the
    model is behind a server (`server`: its address and port), else INTERNAL. Record its
    usage with `model_usage` once the call returns."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": temperature,
    }
    if server is not None:
        attributes["server.address"], attributes["server.port"] = server
    kind = "client" if server is not None else "internal"
    with span(f"{operation} {model}", kind=kind, attributes=attributes) as current:
        yield current


def model_usage(current: Span | None, *, model: str, inputs: int, outputs: int) -> None:
    """A model call's usage (tokens in and out), as the GenAI conventions name it."""
    set_attributes(
        current,
        {
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": inputs,
            "gen_ai.usage.output_tokens": outputs,
        },
    )
