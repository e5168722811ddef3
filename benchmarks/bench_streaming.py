"""Streaming dispatch vs plan-then-execute, on the same plan and the same latencies.

    python benchmarks/bench_streaming.py

The planner is the real `openai` client against the scripted OpenAI-compatible server,
which streams the plan at a fixed token rate (pseudo-tokens of 4 characters) after a
fixed first-token latency. Each SLM step takes a fixed time (the dispatcher sleeps it,
as a worker's model would spend it), so only the scheduling differs between the modes:

- plan-then-execute: wait for the whole plan, then run it (eagerly);
- streaming: add each step to the running flow as soon as its JSON object closes.

The plan is a six-step support pipeline whose steps mostly depend on the one before,
the shape where streaming helps: each step can start while the next is being written.
Time to result is measured from the request to the plan's output (no joiner: it would
add the same time to both). Target: streaming ≥ 1.5× faster at 50 tokens/s.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from taskloom.agents import Planner
from taskloom.agents.goal import GoalRun, run_goal
from taskloom.chat import OpenAIChatModel, ScriptedChatModel
from taskloom.cli import configure_logging
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.step import StepJob, StepResult
from taskloom.testing.server import Reply, ScriptedServer

FIRST_TOKEN_S = 0.3
RATES = (50.0, 100.0)  # tokens/s: a large model's typical streaming rate, and a fast one
STEP_S = {"extract": 1.0, "fill_slots": 1.0, "filter": 0.6, "classify": 0.4, "generate": 1.2}

PLAN: dict[str, Any] = {
    "version": 1,
    "goal": "Answer a customer's email about a delayed order",
    "steps": [
        {
            "id": "contact",
            "kind": "extract",
            "inputs": {"text": "$input.email"},
            "output": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "order_id": {"type": ["string", "null"]},
                },
                "required": ["name", "order_id"],
            },
        },
        {
            "id": "details",
            "kind": "fill_slots",
            "inputs": {
                "text": "$input.email",
                "slots": {"date": "when the order was placed", "item": "what was ordered"},
            },
            "after": ["contact"],
        },
        {
            "id": "docs",
            "kind": "filter",
            "inputs": {"query": "late delivery of ${details.slots.item}", "passages": "$input.kb"},
        },
        {
            "id": "reply",
            "kind": "generate",
            "inputs": {
                "instruction": "Write a short apology to ${contact.name} about the late order",
                "context": ["$details.slots", "$docs.kept"],
            },
        },
        {
            "id": "tone",
            "kind": "classify",
            "inputs": {"text": "$reply.text", "labels": ["apologetic", "neutral", "curt"]},
        },
        {
            "id": "subject",
            "kind": "generate",
            "inputs": {"instruction": "A subject line for this reply", "context": "$reply.text"},
        },
    ],
    "output": {"reply": "$reply.text", "tone": "$tone.label", "subject": "$subject.text"},
}
INPUTS = {"email": "Hi, I'm Ann; order 42 (a kettle, ordered 3 May) never came.", "kb": ["a"]}


class TimedDispatcher:
    """Runs steps inline on the scripted SLM, after sleeping each kind's fixed time."""

    def __init__(self, settings: Settings) -> None:
        self.inner = InlineDispatcher(model=ScriptedChatModel(name="slm"), settings=settings)

    def dispatch(self, job: StepJob) -> StepResult:
        time.sleep(STEP_S.get(job.kind, 0.0))
        return self.inner.dispatch(job)

    def close(self) -> None:
        self.inner.close()


def time_to_result(server: ScriptedServer, settings: Settings, *, is_streaming: bool) -> float:
    planner = Planner(OpenAIChatModel(base_url=server.url, settings=settings), settings=settings)
    agents = GoalRun(planner=planner, is_streaming=is_streaming)
    started = time.perf_counter()
    record = run_goal(
        "Answer this email", INPUTS, agents, dispatcher=TimedDispatcher(settings), settings=settings
    )
    elapsed = time.perf_counter() - started
    assert record.status.value == "done", record.error
    return elapsed


def main() -> None:
    configure_logging(verbose=0, is_json=False)
    plan_chars = len(json.dumps(PLAN))
    print(f"plan: {len(PLAN['steps'])} steps, {plan_chars} chars (~{plan_chars // 4} tokens)")
    print(f"step latencies: {STEP_S}; first-token latency {FIRST_TOKEN_S}s\n")
    print(f"{'tokens/s':>9} {'plan-then-execute':>18} {'streaming':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        for rate in RATES:
            with ScriptedServer(
                respond=lambda body: Reply(text=PLAN), latency_s=FIRST_TOKEN_S, tokens_per_s=rate
            ) as server:
                pte, streamed = [], []
                for _ in range(2):  # alternate, so drift hits both modes alike
                    pte.append(time_to_result(server, settings, is_streaming=False))
                    streamed.append(time_to_result(server, settings, is_streaming=True))
            a, b = statistics.median(pte), statistics.median(streamed)
            print(f"{rate:>9.0f} {a:>17.2f}s {b:>9.2f}s {a / b:>5.2f}×")
    print("\ntarget: ≥ 1.50× at 50 tokens/s (time to result, median of 2 runs each)")


if __name__ == "__main__":
    main()
