"""OpenTelemetry traces against a real receiver: Arize Phoenix, started by a fixture on
free ports, takes OTLP over HTTP. A run submitted over Redis is one trace in it: the
coordinator's run span, a step span per step (its attempts as events), the SLM worker's
`execute` spans under them (the context crossed in the signed envelope), and GenAI spans
for the model calls. The trace is screenshotted in Phoenix's UI (`artifacts/`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import tracing
from taskloom.chat import OpenAIChatModel, sample_for_schema
from taskloom.dispatch import payload
from taskloom.errors import JobRejectedError
from taskloom.testing.server import Reply, ScriptedServer
from tests.conftest import free_port
from tests.workers.redis_helpers import Spawn, spawn_worker, taskloom, wait_for

__all__ = ["spawn_worker"]
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "artifacts"
Span = dict[str, Any]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Arize Phoenix on free ports (OTLP/HTTP at `<url>/v1/traces`), a fresh database."""
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(tmp_path_factory.mktemp("phoenix")),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    for var in tracing.ENDPOINT_VARS:
        env.pop(var, None)  # Phoenix traces itself when told to
    binary = str(Path(sys.executable).parent / "phoenix")
    proc = subprocess.Popen(
        [binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _is_up(url), timeout_s=120, what="Phoenix")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def spans_of(phoenix: str, run_id: str) -> list[Span]:
    """Every span Phoenix holds in the trace of run `run_id` (found by its run span)."""
    spans: list[Span] = _get(f"{phoenix}/v1/projects/default/spans?limit=1000")["data"]
    runs = [s for s in spans if s["attributes"].get("taskloom.run_id") == run_id]
    traces = {s["context"]["trace_id"] for s in runs}
    return [s for s in spans if s["context"]["trace_id"] in traces]


def tracing_env(phoenix: str, service: str) -> dict[str, str]:
    # Spans leave each process within 0.1 s (the workers are SIGKILLed after the test).
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def by_name(spans: list[Span], prefix: str) -> list[Span]:
    return [s for s in spans if s["name"].startswith(prefix)]


def answer(body: dict[str, Any]) -> Reply:
    """The LLM's reply: a value of the schema the request asks for."""
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    return Reply(text=json.dumps(sample_for_schema(schema) if schema else {}))


def submit(redis_url: str, plan: Path, inputs: Path) -> dict[str, Any]:
    done = taskloom("submit", str(plan), "--input", f"@{inputs}", "--redis-url", redis_url)
    assert done.returncode == 0, done.stderr
    waited = taskloom(
        "result", done.stdout.strip(), "--wait", "--json", "--redis-url", redis_url, timeout_s=240
    )
    assert waited.returncode == 0, waited.stderr
    record: dict[str, Any] = json.loads(waited.stdout)
    return record


NEEDS_CHROMIUM = pytest.mark.skipif(
    shutil.which("chromedriver") is None and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in tracing.ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert tracing.tracer() is None and tracing.carrier() == {}
    with tracing.span("nothing") as span:
        assert span is None
    data = payload.encode("step", {"run_id": "r"}, max_attempts=1, secret=None)
    assert '"trace"' not in data


def test_the_trace_context_is_signed_with_the_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    monkeypatch.setattr(tracing, "carrier", lambda: {"traceparent": parent})
    data = payload.encode("step", {"run_id": "r"}, max_attempts=1, secret="s3cret")
    assert payload.decode(data.encode(), secret="s3cret").trace == {"traceparent": parent}
    forged = data.replace("b7ad6b7169203331", "0000000000000001")
    with pytest.raises(JobRejectedError, match="signature does not verify"):
        payload.decode(forged.encode(), secret="s3cret")


def test_an_endpoint_without_the_extra_warns_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    tracing._tracer.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="taskloom"):
            assert tracing.tracer() is None
        with tracing.span("nothing") as span:
            assert span is None
    finally:
        tracing._tracer.cache_clear()
    assert "tracing_unavailable" in caplog.text and "taskloom[otel]" in caplog.text


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracing on in this process, into memory: an application's own provider, which
    taskloom keeps (set once per process, as OpenTelemetry allows)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    tracing._tracer.cache_clear()
    yield exporter
    processor.shutdown()
    tracing._tracer.cache_clear()


def test_an_endpoint_call_is_a_client_span_and_a_local_one_internal(in_memory: Any) -> None:
    from opentelemetry.trace import SpanKind

    with ScriptedServer([Reply(text="hello")]) as server:
        model = OpenAIChatModel(base_url=server.url, model="big-model")
        model.complete([{"role": "user", "content": "hi"}])
    with tracing.model_call("small.gguf", provider="llama.cpp") as span:
        tracing.model_usage(span, model="small.gguf", inputs=3, outputs=1)
    with pytest.raises(ValueError), tracing.model_call("small.gguf", provider="llama.cpp"):
        raise ValueError("the grammar allowed no token")
    client, local, failed = in_memory.get_finished_spans()
    assert (client.name, client.kind) == ("chat big-model", SpanKind.CLIENT)
    assert client.attributes["gen_ai.request.model"] == "big-model"
    assert client.attributes["gen_ai.usage.input_tokens"] > 0
    assert client.attributes["server.address"] == "127.0.0.1"
    assert (local.name, local.kind) == ("chat small.gguf", SpanKind.INTERNAL)
    assert local.attributes["gen_ai.usage.output_tokens"] == 1
    assert failed.attributes["error.type"] == "ValueError"
    assert not failed.status.is_ok


@NEEDS_CHROMIUM
@pytest.mark.timeout(300)
def test_a_submitted_run_is_one_trace_with_the_worker_spans_under_the_run_span(
    phoenix: str, redis_url: str, spawn_worker: Spawn, browser: Any
) -> None:
    with ScriptedServer(respond=answer) as llm:
        spawn_worker(env=tracing_env(phoenix, "taskloom-slm"))
        coordinator = {
            **tracing_env(phoenix, "taskloom-runs"),
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "test",
            "TASKLOOM_ESCALATE_BELOW": "1.0",  # every SLM answer goes on to the LLM
        }
        spawn_worker("--queue", "runs", env=coordinator)
        record = submit(redis_url, EXAMPLES / "triage.json", EXAMPLES / "triage_input.json")
    steps = {s["id"]: s for s in record["steps"]}
    escalated = {e["step_id"] for e in record["escalations"] if e["status"] == "done"}
    assert escalated, "no step escalated: the LLM's spans would go unchecked"

    def complete() -> list[Span]:
        found = spans_of(phoenix, record["run_id"])
        names = {s["name"] for s in found}
        wanted = {"step ", "execute "}
        is_all = all(f"{w}{i}" in names for w in wanted for i in steps)
        return found if is_all and by_name(found, "run ") else []

    spans = wait_for(complete, timeout_s=60, what="the run's spans in Phoenix")
    (run,) = by_name(spans, "run ")
    assert run["parent_id"] is None and len({s["context"]["trace_id"] for s in spans}) == 1
    assert run["attributes"]["taskloom.status"] == "done"
    step_spans = {s["attributes"]["taskloom.step_id"]: s for s in by_name(spans, "step ")}
    assert set(step_spans) == set(steps)
    for step_id, span in step_spans.items():
        assert span["parent_id"] == run["context"]["span_id"]
        assert span["attributes"]["taskloom.kind"] == steps[step_id]["kind"]
        attempts = [e for e in span["events"] if e["name"] == "attempt"]
        assert len(attempts) >= 1 and attempts[0]["attributes"]["taskloom.status"] == "done"
        assert span["attributes"]["taskloom.escalated"] is (step_id in escalated)
    # The SLM worker's spans, in another process, are children of the step spans.
    executes = by_name(spans, "execute ")
    assert {s["attributes"]["taskloom.step_id"] for s in executes} == set(steps)
    for span in executes:
        parent = step_spans[span["attributes"]["taskloom.step_id"]]
        assert span["parent_id"] == parent["context"]["span_id"]
        assert span["attributes"]["taskloom.queue"] == "slm"
        assert span["attributes"]["taskloom.worker"] == steps[
            span["attributes"]["taskloom.step_id"]
        ]["worker"].removeprefix("llm+")
    # Each escalation is a GenAI client span of the LLM call, under its step.
    calls = by_name(spans, "chat ")
    assert calls and {s["parent_id"] for s in calls} <= {
        step_spans[i]["context"]["span_id"] for i in escalated
    }
    for span in calls:
        a = span["attributes"]
        assert span["name"] == f"chat {a['gen_ai.request.model']}"
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["server.address"] == "127.0.0.1"
    screenshot(browser, phoenix, run, "trace-phoenix-submitted")


def screenshot(browser: Any, phoenix: str, run: Span, name: str) -> str:
    """Open the trace in Phoenix's UI, wait until its span tree is drawn, and save it."""
    project = _get(f"{phoenix}/v1/projects")["data"][0]["id"]
    browser.set_window_size(1600, 1000)
    browser.get(f"{phoenix}/projects/{project}/traces/{run['context']['trace_id']}")
    text = wait_for(
        lambda: "execute " in (body := browser.find_element("tag name", "body").text) and body,
        timeout_s=60,
        what="the trace drawn in Phoenix's UI",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    assert run["name"] in text
    return str(text)


@pytest.mark.model
@pytest.mark.timeout(600)
def test_the_resident_models_calls_are_internal_genai_spans_under_the_worker_span(
    phoenix: str, redis_url: str, spawn_worker: Spawn, default_model_path: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    step = {"id": "who", "kind": "extract", "inputs": {"text": "$input.text"}}
    step["output"] = {"type": "object", "properties": {"name": {"type": ["string", "null"]}}}
    plan.write_text(json.dumps({"version": 1, "steps": [step], "output": "$who"}))
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"text": "Hi, this is Maria Lopez from Lyon."}))
    spawn_worker("--model", default_model_path, env=tracing_env(phoenix, "taskloom-gguf"))
    spawn_worker("--queue", "runs", env=tracing_env(phoenix, "taskloom-runs"))
    record = submit(redis_url, plan, inputs)

    def complete() -> list[Span]:
        found = spans_of(phoenix, record["run_id"])
        # the worker's execute span ends after its chat spans, so it may be exported later
        names = ("run ", "chat ", "execute ")
        return found if all(by_name(found, name) for name in names) else []

    spans = wait_for(complete, timeout_s=60, what="the run's spans in Phoenix")
    (execute,) = by_name(spans, "execute ")
    calls = [s for s in by_name(spans, "chat ") if s["parent_id"] == execute["context"]["span_id"]]
    assert calls, "no model call under the worker's span"
    model = Path(default_model_path).stem
    for span in calls:
        a = span["attributes"]
        assert span["name"] == f"chat {model}" and a["gen_ai.provider.name"] == "llama.cpp"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert "server.address" not in a  # in-process: kind INTERNAL, not CLIENT
    print(json.dumps(calls[0], indent=1)[:3000])
