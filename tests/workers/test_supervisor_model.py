"""A box supervisor on the real default model: its child shows where llama.cpp put the
model (this CPU build: the CPU, no layer offloaded, no VRAM), runs a step, and its load
time and step reach /metrics."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from taskloom.config import Settings
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepStatus
from tests.conftest import free_port
from tests.workers.redis_helpers import taskloom
from tests.workers.supervisor_helpers import Supervise, metric, supervise

__all__ = ["supervise"]
pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]


def test_a_real_model_child_shows_what_llama_cpp_reports_and_runs_a_step(
    redis_url: str, supervise: Supervise, default_model_path: str
) -> None:
    port = free_port()
    args = ("--processes", "1", "--concurrency", "2", "--metrics-port", str(port))
    supervise(*args, box="real", model=default_model_path, ready=1)
    shown = taskloom("workers", "--json", "--redis-url", redis_url)
    (child,) = [w for w in json.loads(shown.stdout) if w["name"] == "real.cpu.0"]
    assert child["device"] == "CPU" and child["device_name"] == "-"
    assert re.fullmatch(r"0/\d+", child["gpu_layers"]) and child["vram_mb"] == "0.0"
    assert child["model"].startswith("gemma")
    table = taskloom("workers", "--redis-url", redis_url).stdout
    assert re.search(r"real\.cpu\.0 .* CPU 0/\d+ ", table)
    d = RedisDispatcher(url=redis_url, settings=Settings(redis_url=redis_url))
    job = StepJob(
        run_id="real",
        step_id="intent",
        kind="classify",
        inputs={"text": "Where is my parcel? It never arrived.", "labels": ["refund", "shipping"]},
    )
    result = d.dispatch(job)
    assert result.status == StepStatus.DONE, result.error
    assert result.worker == "real.cpu.0" and result.value["label"] in {"refund", "shipping"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert metric(text, "taskloom_steps_finished_total", kind="classify") == 1
    assert metric(text, "taskloom_model_load_seconds", model=child["model"]) > 0
    assert metric(text, "taskloom_tokens_total", type="prompt") == result.prompt_tokens > 0
