"""OpenTelemetry traces against a real receiver: Arize Phoenix, started by a fixture on
free ports, takes OTLP over HTTP. A run submitted over Redis is one trace in it: the
coordinator's run span, a step span per step (its attempts as events), the SLM worker's
`execute` spans under them (the context crossed in the signed envelope), and GenAI spans
for the model calls. The trace is screenshotted in Phoenix's UI (`artifacts/`)."""

from __future__ import annotations

import json
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
from taskloom.chat import sample_for_schema
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


pytestmark = pytest.mark.skipif(
    shutil.which("chromedriver") is None and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
