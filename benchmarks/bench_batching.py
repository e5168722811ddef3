"""Continuous batching on one worker: steps/s, tokens/s and idle latency, side by side.

    python benchmarks/bench_batching.py [--split report|tune] [--concurrency 16]

Everything is real: one `taskloom worker` process (the embedded cluster: a local
Redis-compatible server, payloads signed), the default model, and a plan that fans out
into one `extract` step per text of benchmarks/data/extraction_texts.json (24 distinct
texts in the `report` split; `tune` has the 8 the defaults were chosen on). It prints:
1. steps/s with the worker at `--concurrency 16` ÷ at `--concurrency 1` (target ≥ 3.0),
   and how many steps extracted every field right on each side;
2. completion tokens/s of that fan-out at 16 ÷ a bare llama.cpp batched-decode loop in
   this process (16 sequences, greedy argmax, no grammar, no prompt, same model and
   threads; target ≥ 0.8): the ceiling of any scheduler on this machine;
3. idle latency: one step on an idle worker, median of 5, at 16 ÷ at 1 (target ≤ 1.1).
The worker's start and model load are not timed: the clock starts once it is registered.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import results
from llama_cpp._logger import set_verbose

from taskloom import Plan, Settings, run
from taskloom.chat.llama.placement import amx_in_use
from taskloom.chat.load import default_model_path
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.embedded import EmbeddedCluster

DATA = Path(__file__).parent / "data" / "extraction_texts.json"
IDLE_RUNS = 5


def load_cases(split: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads(DATA.read_text())
    return data["schema"], data[split]


def fan_out(schema: dict[str, Any], n: int, *, first: int = 0) -> Plan:
    steps = [
        {
            "id": f"s{i}",
            "kind": "extract",
            "inputs": {"text": f"$input.t{i}", "max_tokens": 64},
            "output": schema,
        }
        for i in range(first, first + n)
    ]
    return Plan.model_validate(
        {
            "version": 1,
            "goal": "fan-out",
            "steps": steps,
            "output": {s["id"]: f"${s['id']}" for s in steps},
        }
    )


def is_right(got: Any, expected: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    return isinstance(got, dict) and all(norm(got.get(k)) == norm(v) for k, v in expected.items())


def wait_for_worker(settings: Settings, timeout_s: float = 120.0) -> dict[str, str]:
    """The worker's registration, once it has loaded its model and registered."""
    assert settings.redis_url
    broker = Broker(settings.redis_url, settings=settings)
    deadline = time.monotonic() + timeout_s
    while not (workers := broker.live_workers()):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not register in time")
        time.sleep(0.2)
    return workers[0]


def measure(
    concurrency: int, schema: dict[str, Any], cases: list[dict[str, Any]]
) -> dict[str, Any]:
    """One worker at `concurrency`: the fan-out's makespan and tokens, then idle latency."""
    inputs = {f"t{i}": c["text"] for i, c in enumerate(cases)}
    base = Settings.from_env().override(concurrency=concurrency)
    with EmbeddedCluster(base, workers=1) as cluster:
        settings = cluster.settings
        worker = wait_for_worker(settings)
        # Warm up: compile the schema's grammar and cache the shared prefix, as a
        # long-running worker would have done long before.
        run(fan_out(schema, 1), {"t0": cases[0]["text"]}, settings=settings)
        idle = []
        for i in range(IDLE_RUNS):
            started = time.perf_counter()
            record = run(fan_out(schema, 1, first=i + 1), inputs, settings=settings)
            idle.append(time.perf_counter() - started)
            assert record.status == "done", record.status
        started = time.perf_counter()
        record = run(fan_out(schema, len(cases)), inputs, settings=settings)
        makespan = time.perf_counter() - started
    # A step whose output stayed invalid after its re-asks counts as not right (it still
    # took its time), rather than ending the benchmark.
    failed = [s.id for s in record.steps if s.error]
    if failed:
        print(f"  concurrency {concurrency}: {len(failed)} step(s) failed: {', '.join(failed)}")
    tokens = sum(s.completion_tokens for s in record.steps)
    values = {s.id: s.value for s in record.steps}
    right = sum(is_right(values.get(f"s{i}"), c["expected"]) for i, c in enumerate(cases))
    return {
        "steps_s": len(cases) / makespan,
        "tokens_s": tokens / makespan,
        "makespan_s": makespan,
        "right": right,
        "idle_s": statistics.median(idle),
        "gpu_layers": worker.get("gpu_layers", "-"),
    }


def ceiling(n_seq: int, *, n_threads: int, n_tokens: int = 64) -> float:
    """Generation tokens/s of a bare batched-decode loop: `n_seq` sequences, greedy, no grammar."""
    set_verbose(False)
    llama_cpp.llama_backend_init()
    settings = Settings.from_env()
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = settings.n_gpu_layers or (-1 if settings.gpu is not None else 0)
    mparams.main_gpu = settings.gpu or 0
    mparams.use_extra_bufts = not amx_in_use()  # as the host: AMX buffers segfault here
    model = llama_cpp.llama_model_load_from_file(str(default_model_path()).encode(), mparams)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = 512 * n_seq
    cparams.n_seq_max = n_seq
    cparams.n_batch = cparams.n_ubatch = 512
    cparams.n_threads = cparams.n_threads_batch = n_threads
    cparams.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(tokens: list[tuple[int, int, int]]) -> None:
        for i, (tok, pos, seq) in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, True
        batch.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(ctx, batch) == 0

    bos = llama_cpp.llama_vocab_bos(vocab)
    decode([(bos, 0, s) for s in range(n_seq)])
    last = [bos] * n_seq
    started = time.perf_counter()
    for pos in range(1, n_tokens + 1):
        decode([(last[s], pos, s) for s in range(n_seq)])
        for s in range(n_seq):
            ptr = llama_cpp.llama_get_logits_ith(ctx, s)
            last[s] = int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))
    elapsed = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return n_seq * n_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="report", choices=["report", "tune"])
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    schema, cases = load_cases(args.split)
    n = args.concurrency
    one = measure(1, schema, cases)
    many = measure(n, schema, cases)
    threads = Settings.from_env().n_threads or os.cpu_count() or 1
    bare = ceiling(n, n_threads=threads)
    print(f"{len(cases)} extraction steps ({args.split} split), one worker, default model")
    for label, m in (("concurrency 1", one), (f"concurrency {n}", many)):
        print(
            f"  {label:15} {m['steps_s']:5.2f} steps/s  {m['tokens_s']:6.1f} tokens/s"
            f"  makespan {m['makespan_s']:5.2f} s  right {m['right']:.0f}/{len(cases)}"
            f"  idle step {m['idle_s'] * 1000:4.0f} ms  GPU layers {m['gpu_layers']}"
        )
    print(f"  bare batched decode, {n} sequences, {threads} threads: {bare:6.1f} tokens/s")
    ratios = [
        ("steps/s", many["steps_s"] / one["steps_s"], ">=", 3.0),
        ("tokens/s vs the bare loop", many["tokens_s"] / bare, ">=", 0.8),
        ("idle latency", many["idle_s"] / one["idle_s"], "<=", 1.1),
    ]
    for name, ratio, op, target in ratios:
        ok = ratio >= target if op == ">=" else ratio <= target
        print(f"ratio {name}: {ratio:.2f} (target {op} {target}) -> {'met' if ok else 'NOT met'}")
    k = len(cases)
    results.record(
        "bench_batching",
        real="one `taskloom worker` process (embedded cluster), the default GGUF model, "
        "llama.cpp's batched decode",
        simulated="nothing",
        rows=[
            results.Row(
                what=f"continuous batching: {k} distinct extraction steps, one worker, steps/s "
                f"at `--concurrency {n}` ÷ 1",
                measured=f"{ratios[0][1]:.2f} ({many['steps_s']:.2f} vs {one['steps_s']:.2f} "
                f"steps/s; all fields right {many['right']:.0f}/{k} vs {one['right']:.0f}/{k})",
                target="≥ 3.0",
                met=ratios[0][1] >= 3.0,
            ),
            results.Row(
                what=f"tokens/s of that fan-out at {n} ÷ a bare batched `llama_decode` loop "
                f"({n} sequences, no grammar, no prompt)",
                measured=f"{ratios[1][1]:.2f} ({many['tokens_s']:.0f} vs {bare:.0f} tokens/s)",
                target="≥ 0.8",
                met=ratios[1][1] >= 0.8,
            ),
            results.Row(
                what=f"idle latency: one step on an idle worker at {n} ÷ at 1",
                measured=f"{ratios[2][1]:.2f} ({many['idle_s'] * 1000:,.0f} vs "
                f"{one['idle_s'] * 1000:,.0f} ms)",
                target="≤ 1.1",
                met=ratios[2][1] <= 1.1,
            ),
        ],
    )


if __name__ == "__main__":
    main()
