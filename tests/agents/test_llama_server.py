"""End to end against llama-cpp-python's own OpenAI-compatible server (not written for us).

`python -m llama_cpp.server` serves the default GGUF model on a free port; the planner
talks to it through the real `openai` client. The 270M model's plans are poor, so the
test asserts what is true of any plan that comes back: it validates, it came from the
endpoint, and it runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from taskloom.agents import Budget, Planner
from taskloom.chat import OpenAIChatModel
from taskloom.config import Settings
from taskloom.errors import PlanValidationError
from taskloom.plan import load_plan
from tests.conftest import free_port

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]  # a 270M model planning on 2 cores

INPUTS = {"email": "Hello, this is Ann Lee. My order 4411 arrived broken. Please refund it."}


@pytest.fixture(scope="module")
def llama_server(default_model_path: str) -> Iterator[str]:
    """llama_cpp.server on a free port with the default model; its base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="pip install 'llama-cpp-python[server]'")
    port = free_port()
    proc = subprocess.Popen(
        [
            # llama_cpp.server, with the AMX workaround of taskloom's host where it applies
            sys.executable, "-m", "taskloom.testing.llama_server",
            "--model", default_model_path, "--model_alias", "gemma-270m",
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", "4096", "--n_threads", "2", "--verbose", "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"llama_cpp.server exited: {err[-500:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        else:
            pytest.fail("llama_cpp.server did not come up in 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # busy decoding a request we gave up on
            proc.kill()
            proc.wait(timeout=10)


def test_planner_gets_a_valid_plan_from_llama_cpp_server(llama_server: str) -> None:
    settings = Settings(planner_timeout_s=240, planner_retries=0, plan_repairs=2)
    model = OpenAIChatModel(base_url=llama_server, model="gemma-270m", settings=settings)
    budget = Budget()
    # A 270M model behind a grammar: the compact schema bounds every value it writes.
    planner = Planner(
        model,
        settings=settings,
        budget=budget,
        allow_llm_steps=False,
        is_compact=True,
        max_tokens=700,
    )
    try:
        plan = planner.plan("Triage this support email and draft a reply", INPUTS)
    except PlanValidationError as e:  # the honest outcome for a 270M planner, if it happens
        pytest.fail(f"no valid plan in {planner.attempts} attempts: {e.problems}")
    load_plan(plan, inputs=INPUTS)  # valid, inputs included
    assert plan.steps and all(s.kind != "llm" for s in plan.steps)
    assert budget.llm_calls == planner.attempts >= 1
    assert budget.calls[0].prompt_tokens > 100  # accounted from the server's usage
    # llama.cpp's server rejects `json_schema`; the client fell back to a schema grammar.
    assert model._mode >= 1
