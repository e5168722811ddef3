"""Constrained versus unconstrained decoding speed, measured side by side in one run.

    python benchmarks/bench_constrained.py

On the default model and one extraction prompt (its prefix cached, so the rate is the
decode rate), it prints tokens per second for:
1. taskloom's host, unconstrained and constrained to a JSON schema (sample first, check
   the token against the grammar, mask more only when it is rejected); target ≥ 0.8;
2. stock llama-cpp-python (`Llama.create_completion`), without and with `grammar=`.

Measured here (2 shared cores, 1 generation thread each, gemma-3-270m Q4_K_M):
taskloom 48.1 t/s unconstrained, 49.2 t/s constrained, ratio 1.03; stock
llama-cpp-python 38.1 → 13.6 t/s, ratio 0.35. Same greedy output as masking the whole
vocabulary every token (tests/chat/test_host.py checks it).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from llama_cpp import Llama, LlamaGrammar

from taskloom.chat import Message
from taskloom.chat.llama.host import ModelHost, default_model_path

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"]},
        "order_id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "city": {"type": ["string", "null"]},
        "product": {"type": ["string", "null"]},
        "complaint": {"type": ["string", "null"]},
    },
    "required": ["name", "order_id", "email", "city", "product", "complaint"],
}
SYSTEM = (
    "Extract the fields from the text as JSON. Use null for a field the text does not give.\n\n"
    "Text: Hello, I am Rosa Diaz from Denver and my order 20231 (a red kettle) was damaged."
    " rosa.diaz@nypd.org\n"
    'Answer: {"name": "Rosa Diaz", "order_id": "20231", "email": "rosa.diaz@nypd.org",'
    ' "city": "Denver", "product": "a red kettle", "complaint": "was damaged"}'
)
TEXT = (
    "Text: Hi, this is Maria Lopez in Seattle. My order 88231, a blue coffee grinder, arrived"
    " with a cracked lid. Write to maria.lopez@example.com\nAnswer:"
)
MESSAGES: list[Message] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": TEXT},
]
THREADS = max((os.cpu_count() or 1) // 2, 1)  # the same for both, llama-cpp-python's default
MAX_TOKENS = 80
RUNS = 5


def rates(
    free: Callable[[], tuple[int, float]], constrained: Callable[[], tuple[int, float]]
) -> tuple[float, float, float]:
    """Median tokens/s of each, and the median of paired ratios.

    The two are run alternately, so that load from other processes on a shared machine
    falls on both alike; each pair gives one ratio.
    """
    free()
    constrained()
    pairs = []
    for _ in range(RUNS):
        tokens, seconds = free()
        a = tokens / seconds
        tokens, seconds = constrained()
        pairs.append((a, tokens / seconds))
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(b / a for a, b in pairs),
    )


def main() -> None:
    path = str(default_model_path())
    host = ModelHost(path, n_threads=THREADS)

    def ours(schema: dict[str, object] | None) -> Callable[[], tuple[int, float]]:
        def call() -> tuple[int, float]:
            c = host.complete(MESSAGES, schema=schema, max_tokens=MAX_TOKENS)
            return c.completion_tokens, c.run_ms / 1000

        return call

    ours_free, ours_json, ours_ratio = rates(ours(None), ours(SCHEMA))
    sample = host.complete(MESSAGES, schema=SCHEMA, max_tokens=MAX_TOKENS).text
    host.close()

    llm = Llama(path, n_ctx=4096, n_threads=THREADS, verbose=False)
    prompt = "\n\n".join(m["content"] for m in MESSAGES)
    grammar = LlamaGrammar.from_json_schema(__import__("json").dumps(SCHEMA), verbose=False)

    def stock(with_grammar: bool) -> Callable[[], tuple[int, float]]:
        def call() -> tuple[int, float]:
            started = time.perf_counter()
            out = llm.create_completion(
                prompt,
                max_tokens=MAX_TOKENS,
                temperature=0.0,
                grammar=grammar if with_grammar else None,
            )
            return out["usage"]["completion_tokens"], time.perf_counter() - started

        return call

    stock_free, stock_json, stock_ratio = rates(stock(False), stock(True))

    print(f"constrained output: {sample.strip()}")
    print(f"{'':34}{'unconstrained':>14}{'constrained':>13}{'ratio (median of pairs)':>25}")
    print(
        f"{'taskloom (sample, then check)':34}{ours_free:>10.1f} t/s{ours_json:>9.1f} t/s"
        f"{ours_ratio:>25.2f}"
    )
    print(
        f"{'llama-cpp-python grammar=':34}{stock_free:>10.1f} t/s{stock_json:>9.1f} t/s"
        f"{stock_ratio:>25.2f}"
    )
    print(f"target: taskloom ratio >= 0.80 -> {'met' if ours_ratio >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
