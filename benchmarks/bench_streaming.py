"""Streaming dispatch vs plan-then-execute, on the same plan and the same latencies.

    python benchmarks/bench_streaming.py              # simulated steps, then real SLM steps
    python benchmarks/bench_streaming.py --no-model   # the simulated runs only

Real: the planner path `run --goal` takes (`Planner`, `run_goal`, the streaming step
parser) and the real `openai` client over HTTP. Simulated: the LLM, a scripted
OpenAI-compatible server that streams a fixed plan after a fixed first-token latency,
at a fixed rate, in word-sized tokens (`testing.server.word_tokens`: about 3 characters
a token on JSON, a token never ending inside a word); and, in the first runs, the SLM
steps, each a fixed sleep per kind, so only the scheduling differs between the modes.
The last run executes the SLM steps on the real default GGUF model instead.

- plan-then-execute: wait for the whole plan, then run it (eagerly);
- streaming: add each step to the running flow as soon as its JSON object closes.

The plan is a five-step support pipeline in which every edge carries data (each step
reads an output of the steps before it; no data-free `after` edge). Time to result is
measured from the request to the plan's output (no joiner: it would add the same time
to both). Target: streaming ≥ 1.5× faster at 50 tokens/s; the ratio reached is printed
and recorded, met or not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import results

from taskloom.agents import Planner
from taskloom.agents.goal import GoalRun, run_goal
from taskloom.chat import OpenAIChatModel, ScriptedChatModel
from taskloom.cli import configure_logging
from taskloom.config import Settings
from taskloom.dispatch.base import Dispatcher
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.step import StepJob, StepResult
from taskloom.testing.server import Reply, ScriptedServer, word_tokens

FIRST_TOKEN_S = 0.3
RATES = (50.0, 100.0)  # tokens/s: a large model's typical streaming rate, and a fast one
TARGET = 1.5
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
                    "item": {"type": "string"},
                },
                "required": ["name", "order_id", "item"],
            },
        },
        {
            "id": "docs",
            "kind": "filter",
            "inputs": {"query": "late delivery of ${contact.item}", "passages": "$input.kb"},
        },
        {
            "id": "reply",
            "kind": "generate",
            "inputs": {
                "instruction": "Write a short apology to ${contact.name} about the late order "
                "${contact.order_id}",
                "context": "$docs.kept",
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
"""Every edge carries data: each step reads an output of the steps it follows, and no
step has a data-free `after` edge (the shape of a real plan, not one arranged to stream)."""
INPUTS = {
    "email": "Hi, I'm Ann Keller. I ordered a kettle on 3 May (order 42) and it never came. "
    "The tracking page has said 'in transit' for nine days now. Could you tell me what "
    "happened, and whether I can still get it before the weekend?",
    "kb": [
        "Parcels delayed more than seven days are traced by the carrier, and a replacement "
        "is sent at once if the customer asks for one.",
        "Refunds are paid to the original card within five working days.",
        "Our shops are open from nine to six, Monday to Saturday.",
    ],
}


class TimedDispatcher:
    """Runs steps inline on the scripted SLM, after sleeping each kind's fixed time."""

    def __init__(self, settings: Settings) -> None:
        self.inner = InlineDispatcher(model=ScriptedChatModel(name="slm"), settings=settings)

    def dispatch(self, job: StepJob) -> StepResult:
        time.sleep(STEP_S.get(job.kind, 0.0))
        return self.inner.dispatch(job)

    def close(self) -> None:
        self.inner.close()


def time_to_result(
    server: ScriptedServer, settings: Settings, dispatcher: Dispatcher, *, is_streaming: bool
) -> float:
    planner = Planner(OpenAIChatModel(base_url=server.url, settings=settings), settings=settings)
    agents = GoalRun(planner=planner, is_streaming=is_streaming)
    started = time.perf_counter()
    record = run_goal("Answer this email", INPUTS, agents, dispatcher=dispatcher, settings=settings)
    elapsed = time.perf_counter() - started
    assert record.status.value == "done", record.error
    return elapsed


def compare(
    settings: Settings, rate: float, dispatcher: Callable[[], Dispatcher], *, runs: int
) -> tuple[float, float]:
    """Median time to result, plan-then-execute and streaming, alternated `runs` times."""
    with ScriptedServer(
        respond=lambda body: Reply(text=PLAN),
        latency_s=FIRST_TOKEN_S,
        tokens_per_s=rate,
        tokenize=word_tokens,
    ) as server:
        pte, streamed = [], []
        for _ in range(runs):  # alternate, so drift hits both modes alike
            pte.append(time_to_result(server, settings, dispatcher(), is_streaming=False))
            streamed.append(time_to_result(server, settings, dispatcher(), is_streaming=True))
    return statistics.median(pte), statistics.median(streamed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-model", action="store_true", help="skip the run on the real SLM")
    args = parser.parse_args()
    configure_logging(verbose=0, is_json=False)
    plan_text = json.dumps(PLAN)
    n_tokens = len(word_tokens(plan_text))
    print(
        f"plan: {len(PLAN['steps'])} steps, every edge carries data; {len(plan_text)} chars, "
        f"{n_tokens} streamed tokens ({len(plan_text) / n_tokens:.1f} chars a token)"
    )
    print(f"simulated step latencies: {STEP_S}; first-token latency {FIRST_TOKEN_S}s\n")
    print(
        f"{'SLM steps':>22} {'tokens/s':>9} {'plan-then-execute':>18} {'streaming':>10} "
        f"{'ratio':>6}"
    )
    rows: list[results.Row] = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), n_threads=2)
        runs: list[tuple[str, float, Callable[[], Dispatcher], int]] = [
            ("simulated (sleeps)", rate, partial(TimedDispatcher, settings), 2) for rate in RATES
        ]
        if not args.no_model:
            from taskloom.chat.load import default_host

            slm = default_host(settings)
            real = partial(InlineDispatcher, model=slm, settings=settings)
            runs.append(("real default model", RATES[0], real, 2))
        for name, rate, dispatcher, n in runs:
            a, b = compare(settings, rate, dispatcher, runs=n)
            print(f"{name:>22} {rate:>9.0f} {a:>17.2f}s {b:>9.2f}s {a / b:>5.2f}×")
            rows.append(
                results.Row(
                    what=f"streaming dispatch ÷ plan-then-execute, time to result, {name} "
                    f"SLM steps, plan streamed at {rate:.0f} tokens/s",
                    measured=f"{a / b:.2f}× ({b:.2f} s vs {a:.2f} s)",
                    target="≥ 1.5×" if rate == RATES[0] else "(report)",
                    met=a / b >= TARGET if rate == RATES[0] else None,
                )
            )
    print(
        f"\ntarget: ≥ {TARGET:.2f}× at {RATES[0]:.0f} tokens/s "
        "(time to result, median of 2 runs each)"
    )
    results.record(
        "bench_streaming",
        real="the planner path (Planner, run_goal, streaming dispatch) and the openai client "
        "over HTTP"
        + ("; one run with the SLM steps on the default GGUF model" if not args.no_model else ""),
        simulated="the LLM (a scripted server streaming a fixed plan, word-sized tokens at a "
        "fixed rate); SLM step times in the other runs (fixed sleeps)",
        rows=rows,
    )


if __name__ == "__main__":
    main()
