"""Routing: simple requests to the SLM, complex ones to the LLM planner, and what it saves.

    python benchmarks/bench_routing.py                  # SLM signal from the real default model
    python benchmarks/bench_routing.py --features-only  # no model: the features alone

On the shipped set of labelled requests (`data/routing_requests.json`), every request
runs through `run_goal` twice, in one process:

- LLM only: no router; the LLM (the real `openai` client against the scripted
  OpenAI-compatible server) plans a three-step plan and joins the results;
- routed: the router scores the request (the real default GGUF model's `classify`,
  with its calibrated confidence, mixed with the cheap features) and either answers
  with one SLM step or plans with the LLM as above.

SLM steps execute on the scripted SLM, so the run is quick; the router's own SLM call
runs on the real model. LLM costs use gpt-4o's prices (see `openai_chat.PRICES_USD_PER_MTOK`),
SLM costs `Settings.slm_usd_per_mtok`. Targets: ≥70% of simple requests to the SLM,
≤10% of complex ones, at the default threshold.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from taskloom.agents import Budget, Joiner, Planner, Router
from taskloom.agents.goal import GoalRun, run_goal
from taskloom.chat import ChatModel, OpenAIChatModel, ScriptedChatModel
from taskloom.cli import configure_logging
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.testing.server import Reply, ScriptedServer

DATA = Path(__file__).parent / "data" / "routing_requests.json"
PLAN = {
    "version": 1,
    "steps": [
        {"id": "facts", "kind": "extract", "inputs": {"text": "$input.request"},
         "output": {"type": "object", "properties": {"topic": {"type": "string"}},
                    "required": ["topic"]}},
        {"id": "draft", "kind": "generate",
         "inputs": {"instruction": "Do what the request asks", "context": "$facts"}},
        {"id": "check", "kind": "classify",
         "inputs": {"text": "$draft.text", "labels": ["complete", "incomplete"]}},
    ],
    "output": "$draft.text",
}  # fmt: skip


def llm_reply(body: dict[str, Any]) -> Reply:
    system = body["messages"][0]["content"]
    if system.startswith("You are a planner"):
        return Reply(text=PLAN)
    return Reply(text={"action": "finish", "answer": "An answer of a few sentences, " * 4})


def run_all(
    requests: list[dict[str, str]],
    server: ScriptedServer,
    settings: Settings,
    *,
    router_slm: ChatModel | None,
    is_routed: bool,
) -> list[dict[str, Any]]:
    out = []
    for r in requests:
        budget = Budget()
        llm = OpenAIChatModel(base_url=server.url, model="gpt-4o", settings=settings)
        agents = GoalRun(
            planner=Planner(llm, settings=settings, budget=budget),
            joiner=Joiner(llm, settings=settings, budget=budget),
            router=Router(router_slm, threshold=settings.route_threshold, budget=budget)
            if is_routed
            else None,
            llm=llm,
            budget=budget,
            is_streaming=False,
        )
        dispatcher = InlineDispatcher(model=ScriptedChatModel(name="slm"), settings=settings)
        record = run_goal(
            r["text"], {"request": r["text"]}, agents, dispatcher=dispatcher, settings=settings
        )
        route = record.route or {"target": "llm", "score": 1.0}
        out.append(
            {
                "label": r["label"],
                "target": route["target"],
                "score": route["score"],
                "cost_usd": budget.cost_usd,
                "router_usd": (route.get("signals") or {}).get("slm", {}).get("cost_usd", 0.0),
                "slm_label": (route.get("signals") or {}).get("slm", {}).get("label"),
            }
        )
    return out


def share(rows: list[dict[str, Any]], label: str, *, threshold: float | None = None) -> float:
    picked = [r for r in rows if r["label"] == label]
    if threshold is None:
        return sum(r["target"] == "slm" for r in picked) / len(picked)
    return sum(r["score"] < threshold for r in picked) / len(picked)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features-only", action="store_true", help="no model: features alone")
    args = parser.parse_args()
    configure_logging(verbose=0, is_json=False)
    requests = json.loads(DATA.read_text())["requests"]
    n_simple = sum(r["label"] == "simple" for r in requests)
    print(f"{len(requests)} requests: {n_simple} simple, {len(requests) - n_simple} complex")
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), escalate_below=0.0, n_threads=2)
        slm: ChatModel | None = None
        if not args.features_only:
            from taskloom.chat.llama.host import default_host

            slm = default_host(settings)
            print(f"router signal: features + classify on the real model {slm.name}")
        else:
            print("router signal: features only (--features-only; no model loaded)")
        with ScriptedServer(respond=llm_reply) as server:
            baseline = run_all(requests, server, settings, router_slm=None, is_routed=False)
            started = time.perf_counter()
            routed = run_all(requests, server, settings, router_slm=slm, is_routed=True)
            routing_s = time.perf_counter() - started
    t = settings.route_threshold
    to_slm_simple, to_slm_complex = share(routed, "simple"), share(routed, "complex")
    cost_llm = sum(r["cost_usd"] for r in baseline)
    cost_routed = sum(r["cost_usd"] for r in routed)
    print(
        f"routed {len(requests)} requests in {routing_s:.1f}s "
        f"({routing_s / len(requests):.2f}s each)"
    )
    print(f"\nat the default threshold {t:.2f}:")
    print(f"  simple  → SLM: {to_slm_simple:6.1%}   (target ≥ 70%)")
    print(f"  complex → SLM: {to_slm_complex:6.1%}   (target ≤ 10%)")
    print(
        f"  cost: routed ${cost_routed:.5f} vs LLM-only ${cost_llm:.5f} "
        f"= {cost_routed / cost_llm:.1%} of the baseline ({1 - cost_routed / cost_llm:.1%} saved)"
    )
    if slm is not None:
        agree = {
            label: sum(r["slm_label"] == label for r in routed if r["label"] == label)
            / sum(r["label"] == label for r in routed)
            for label in ("simple", "complex")
        }
        print(
            f"  the SLM's classify alone agreed with the label on {agree['simple']:.0%} of simple "
            f"and {agree['complex']:.0%} of complex requests "
            f"(weight {Router(slm).slm_weight:.1f} in the mix)"
        )
    slm_mean = [r["cost_usd"] for r in routed if r["target"] == "slm"]
    direct = sum(slm_mean) / len(slm_mean) if slm_mean else 0.0
    print("\nthreshold sweep (same scores; cost estimated per request from the two runs):")
    print(f"  {'threshold':>9} {'simple→SLM':>11} {'complex→SLM':>12} {'cost vs LLM-only':>17}")
    for sweep in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        cost = sum(
            (r["router_usd"] + b["cost_usd"]) if r["score"] >= sweep else direct
            for r, b in zip(routed, baseline, strict=True)
        )
        print(
            f"  {sweep:>9.2f} {share(routed, 'simple', threshold=sweep):>11.1%} "
            f"{share(routed, 'complex', threshold=sweep):>12.1%} {cost / cost_llm:>17.1%}"
        )  # fmt: skip


if __name__ == "__main__":
    main()
