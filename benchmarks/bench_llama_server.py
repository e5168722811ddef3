"""taskloom's batched host against llama.cpp's own server, on the same extraction prompts.

    python benchmarks/bench_llama_server.py [--split report|tune] [--parallel 16]

Both sides are real and run the default model on this machine's cores, one after the
other in one run:
- llama.cpp's `llama-server`, built from the llama.cpp sources vendored in the installed
  llama-cpp-python's sdist (benchmarks/build_llama_server.sh builds it once and caches
  it in ~/.cache/taskloom), started with `--parallel 16 --kv-unified`, and sent each
  text's chat (the very messages taskloom's `extract` builds: instructions, fields,
  examples, text) with a `json_schema` response format, greedy, first one request at a
  time, then 16 in flight;
- taskloom's `ModelHost` in this process, at concurrency 1 and 16, running each step
  through `run_task("extract", ...)` (what a worker runs, without Redis) from 16
  threads.
It prints steps/s of each, taskloom ÷ llama-server at 16 (goal ≥ 3.0), and how many
texts each side got entirely right (name, city and order number).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import results
from bench_batching import is_right, load_cases

from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.tools import ToolRegistry, run_task
from taskloom.tools import extract as extract_kind
from taskloom.tools.base import build_messages, parse_inputs

BUILD = Path(__file__).parent / "build_llama_server.sh"
MAX_TOKENS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_map(fn: Any, items: list[Any], workers: int) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(fn, items))
    return time.perf_counter() - started, out


def server_side(
    binary: str, cases: list[dict[str, Any]], schema: dict[str, Any], *, parallel: int, threads: int
) -> dict[int, tuple[float, int]]:
    port = free_port()
    cmd = [binary, "-m", str(default_model_path()), "--port", str(port), "--host", "127.0.0.1"]
    cmd += ["--parallel", str(parallel), "-c", str(parallel * 2048), "--kv-unified"]
    cmd += ["-t", str(threads), "-tb", str(threads), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)

        def ask(case: dict[str, Any]) -> Any:
            inputs = parse_inputs(extract_kind, "extract", {"text": case["text"]})
            messages = build_messages(extract_kind, inputs, extract_kind.schema(inputs, schema))
            body = {
                "messages": messages,
                "temperature": 0,
                "max_tokens": MAX_TOKENS,
                "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
            }
            req = urllib.request.Request(
                f"{base}/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=300) as r:
                text = json.loads(r.read())["choices"][0]["message"]["content"]
            try:
                return json.loads(text)
            except ValueError:
                return None

        ask(cases[0])  # warm-up: the shared prefix cached, as on a long-running server
        out = {}
        for n in (1, parallel):
            elapsed, got = timed_map(ask, cases, n)
            out[n] = (len(cases) / elapsed, sum(map(is_right, got, [c["expected"] for c in cases])))
        return out
    finally:
        proc.terminate()
        proc.wait()


def taskloom_side(
    cases: list[dict[str, Any]], schema: dict[str, Any], *, parallel: int
) -> dict[int, tuple[float, int]]:
    out = {}
    for n in (1, parallel):
        host = ModelHost(default_model_path(), concurrency=n)

        def step(case: dict[str, Any], host: ModelHost = host) -> Any:
            inputs = {"text": case["text"], "max_tokens": MAX_TOKENS}
            return run_task(
                "extract", inputs, output=schema, model=host, tools=ToolRegistry()
            ).value

        step(cases[0])  # warm-up, as above
        elapsed, got = timed_map(step, cases, parallel)
        out[n] = (len(cases) / elapsed, sum(map(is_right, got, [c["expected"] for c in cases])))
        host.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="report", choices=["report", "tune"])
    parser.add_argument("--parallel", type=int, default=16)
    args = parser.parse_args()
    schema, cases = load_cases(args.split)
    binary = subprocess.run([str(BUILD)], check=True, capture_output=True, text=True).stdout
    threads = os.cpu_count() or 1
    server = server_side(binary.strip(), cases, schema, parallel=args.parallel, threads=threads)
    ours = taskloom_side(cases, schema, parallel=args.parallel)
    n = len(cases)
    print(
        f"{n} extraction prompts ({args.split} split), JSON-schema constrained, {threads} threads"
    )
    for name, side in (("llama-server", server), ("taskloom", ours)):
        for k, (rate, right) in side.items():
            label = "one at a time" if k == 1 else f"{k} in flight"
            print(f"  {name:12} {label:14} {rate:5.2f} steps/s  right {right}/{n}")
    ratio = ours[args.parallel][0] / server[args.parallel][0]
    verdict = "met" if ratio >= 3.0 else "NOT met"
    print(
        f"ratio taskloom / llama-server at {args.parallel}: {ratio:.2f} (goal >= 3.0) -> {verdict}"
    )
    p = args.parallel
    results.record(
        "bench_llama_server",
        real="llama.cpp's llama-server built from the vendored sources, taskloom's ModelHost, "
        "the default GGUF model",
        simulated="nothing",
        rows=[
            results.Row(
                what=f"÷ llama.cpp's `llama-server --parallel {p} --kv-unified` (built from the "
                f"vendored sources), JSON schema, same {n} prompts",
                measured=f"{ratio:.2f} (taskloom {ours[p][0]:.2f} steps/s, {ours[p][1]}/{n} right; "
                f"llama-server {server[p][0]:.2f} steps/s, {server[p][1]}/{n} right; one at a "
                f"time {ours[1][0]:.2f} vs {server[1][0]:.2f}, {ours[1][1]} and {server[1][1]} "
                f"of {n} right)",
                target="≥ 3.0",
                met=ratio >= 3.0,
            )
        ],
    )


if __name__ == "__main__":
    main()
