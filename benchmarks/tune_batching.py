"""The sweep behind the defaults: steps/s by concurrency and thread count, in-process.

    python benchmarks/tune_batching.py [--concurrency 1,4,8,16,32] [--threads 1,2]

Real model, real kind code (`run_task("extract", ...)` from one thread per step, as a
worker runs them), no Redis. It runs on the `tune` split of
benchmarks/data/extraction_texts.json (8 texts, each asked 3 times with a different
order number, so 24 distinct steps), never on the `report` split that docs/benchmarks.md's
numbers come from. For each setting it prints steps/s, completion tokens/s, peak RSS
and the speed-up over concurrency 1 with the same threads.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench_batching import load_cases

from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.tools import ToolRegistry, run_task


def texts() -> tuple[dict[str, Any], list[str]]:
    schema, cases = load_cases("tune")
    out = []
    for k in range(3):
        for c in cases:
            order = c["expected"]["order_id"]
            out.append(c["text"].replace(order, str(int(order) + 7 * k)))
    return schema, out


def rate(
    concurrency: int, threads: int, schema: dict[str, Any], items: list[str]
) -> tuple[float, float]:
    host = ModelHost(default_model_path(), concurrency=concurrency, n_threads=threads)
    tokens = 0

    def step(text: str) -> None:
        nonlocal tokens
        out = run_task(
            "extract",
            {"text": text, "max_tokens": 64},
            output=schema,
            model=host,
            tools=ToolRegistry(),
        )
        tokens += out.usage.completion_tokens

    step(items[0])  # warm-up: grammar compiled, shared prefix cached
    tokens = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max(concurrency, 1)) as pool:
        list(pool.map(step, items))
    elapsed = time.perf_counter() - started
    host.close()
    return len(items) / elapsed, tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="1,4,8,16,32")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    schema, items = texts()
    base: dict[int, float] = {}
    print(f"{len(items)} extraction steps (tune split), in-process host")
    for threads in map(int, args.threads.split(",")):
        for n in map(int, args.concurrency.split(",")):
            steps_s, tokens_s = rate(n, threads, schema, items)
            base.setdefault(threads, steps_s)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"  threads {threads} concurrency {n:2}: {steps_s:5.2f} steps/s"
                f"  {tokens_s:6.1f} tokens/s  x{steps_s / base[threads]:.2f}"
                f"  peak RSS so far {rss:.0f} MB"
            )


if __name__ == "__main__":
    main()
