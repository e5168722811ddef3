"""Constrained versus unconstrained decoding speed, measured side by side in one run.

    python benchmarks/bench_constrained.py

On the default model, for two extraction prompts (their prefix cached, so the rate is
the decode rate), it prints tokens per second for:
1. taskloom's host, unconstrained and constrained to a JSON schema (sample first, check
   the token against the grammar, mask more only when it is rejected); target ≥ 0.8;
2. stock llama-cpp-python (`Llama.create_completion`), without and with `grammar=`.

Both sides of each pair stop the same way: once the text is a whole JSON object (the
constrained side's grammar ends there; the unconstrained side checks for it, taskloom's
with `stop_at_json`, stock llama-cpp-python's with a stopping criterion), or at
`MAX_TOKENS`. For taskloom's constrained side it prints the sampled tokens the grammar
rejected and the tokens that needed the whole vocabulary masked, per token generated.

The two prompts:
- aligned: the prompt's example lists the schema's keys in schema order, with short
  values, so the sampled token is nearly always allowed;
- adversarial: the example lists the keys in another order than the schema's, two
  fields are free text (sentences), and one is an array of objects, so the model's
  first choice is often rejected and the costly path is taken.

Real: everything (the default GGUF model, both decoders). Simulated: nothing. Greedy
output is the same as masking the whole vocabulary every token (tests/chat/test_host.py).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import results
from llama_cpp import Llama, LlamaGrammar, StoppingCriteriaList

from taskloom.chat import Completion, Message
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.llama.picker import json_done  # what ends a schema's generation
from taskloom.chat.llama.placement import amx_in_use
from taskloom.chat.model_file import default_model_path

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
ADVERSARIAL_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "customer": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
                "required": ["product", "quantity"],
            },
        },
        "requested_action": {"type": "string"},
        "order_id": {"type": ["string", "null"]},
    },
    "required": ["summary", "customer", "items", "requested_action", "order_id"],
}
ADVERSARIAL_SYSTEM = (
    "Read the customer's message and answer with JSON: the order id, the customer, the "
    "items with their quantities, a one-sentence summary, and what they ask us to do.\n\n"
    "Text: Good morning. This is Tom Becker; order 5512 had two lamps and one rug, and the "
    "rug came in the wrong colour. I would like it swapped for the grey one, please.\n"
    'Answer: {"order_id": "5512", "requested_action": "Swap the rug for the grey one.", '
    '"items": [{"quantity": 2, "product": "lamp"}, {"quantity": 1, "product": "rug"}], '
    '"customer": "Tom Becker", "summary": "The rug of order 5512 arrived in the wrong colour."}'
)
ADVERSARIAL_TEXT = (
    "Text: Hello, I'm Priya Nair. I ordered three notebooks and a fountain pen last week "
    "(order 90417). The pen leaks ink all over the pages and one notebook is torn. Could "
    "you send a new pen and refund the torn notebook?\nAnswer:"
)
CASES: dict[str, tuple[dict[str, object], list[Message]]] = {
    "aligned": (
        SCHEMA,
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TEXT}],
    ),
    "adversarial": (
        ADVERSARIAL_SCHEMA,
        [
            {"role": "system", "content": ADVERSARIAL_SYSTEM},
            {"role": "user", "content": ADVERSARIAL_TEXT},
        ],
    ),
}
THREADS = max((os.cpu_count() or 1) // 2, 1)  # the same for both, llama-cpp-python's default
MAX_TOKENS = 160
RUNS = 3


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


def measure(
    host: ModelHost, llm: Llama, schema: dict[str, object], messages: list[Message]
) -> dict[str, object]:
    """Both decoders on one prompt: rates, ratios, the output and the grammar's work."""

    def ours(constrained: bool) -> Callable[[], tuple[int, float]]:
        def call() -> tuple[int, float]:
            c = host.complete(
                messages,
                schema=schema if constrained else None,
                max_tokens=MAX_TOKENS,
                stop_at_json=True,
            )
            return c.completion_tokens, c.run_ms / 1000

        return call

    ours_free, ours_json, ours_ratio = rates(ours(False), ours(True))
    sample = host.complete(messages, schema=schema, max_tokens=MAX_TOKENS)
    free_sample = host.complete(messages, max_tokens=MAX_TOKENS, stop_at_json=True)

    prompt = "\n\n".join(m["content"] for m in messages)
    n_prompt = len(llm.tokenize(prompt.encode()))
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)

    def stop(ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> bool:
        return json_done(llm.detokenize(list(ids[n_prompt:])))

    def stock(with_grammar: bool) -> Callable[[], tuple[int, float]]:
        def call() -> tuple[int, float]:
            started = time.perf_counter()
            out = llm.create_completion(
                prompt,
                max_tokens=MAX_TOKENS,
                temperature=0.0,
                grammar=grammar if with_grammar else None,
                stopping_criteria=StoppingCriteriaList([stop]),
            )
            return out["usage"]["completion_tokens"], time.perf_counter() - started

        return call

    stock_free, stock_json, stock_ratio = rates(stock(False), stock(True))
    return {
        "ours": (ours_free, ours_json, ours_ratio),
        "stock": (stock_free, stock_json, stock_ratio),
        "sample": sample,
        "free_sample": free_sample,
    }


def stock_llama(path: str) -> Llama:
    """Stock llama-cpp-python's `Llama`, with the weight buffers taskloom's host uses: no
    AMX buffers on a CPU with AMX tiles, where llama.cpp segfaults in the first decode
    (`Llama` has no argument for it, so its default parameters are patched meanwhile)."""
    import llama_cpp.llama_cpp as bindings

    default = bindings.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = not amx_in_use()
        return p

    bindings.llama_model_default_params = params
    try:
        return Llama(path, n_ctx=4096, n_threads=THREADS, verbose=False)
    finally:
        bindings.llama_model_default_params = default


def main() -> None:
    path = str(default_model_path())
    host = ModelHost(path, n_threads=THREADS)
    llm = stock_llama(path)
    rows: list[results.Row] = []
    for name, (schema, messages) in CASES.items():
        m = measure(host, llm, schema, messages)
        sample, free_sample = m["sample"], m["free_sample"]
        assert isinstance(sample, Completion) and isinstance(free_sample, Completion)
        ours_free, ours_json, ours_ratio = m["ours"]  # type: ignore[misc]
        stock_free, stock_json, stock_ratio = m["stock"]  # type: ignore[misc]
        n = sample.completion_tokens
        rejected, masks = sample.grammar_rejections or 0, sample.full_masks or 0
        print(f"\n== {name}")
        print(f"constrained output ({n} tokens): {sample.text.strip()}")
        print(
            f"unconstrained output ({free_sample.completion_tokens} tokens): "
            f"{free_sample.text.strip()}"
        )
        print(
            f"grammar: {rejected} sampled tokens rejected ({rejected / n:.2f} per token), "
            f"{masks} whole-vocabulary masks ({masks / n:.2f} per token)"
        )
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
        rows.append(
            results.Row(
                what=f"constrained ÷ unconstrained tokens/s, same model and prompt, {name} "
                "prompt (both stop when the JSON object closes)",
                measured=f"{ours_ratio:.2f} (stock llama-cpp-python `grammar=`: "
                f"{stock_ratio:.2f}); {rejected / n:.2f} rejections and {masks / n:.2f} "
                "full masks per token",
                target="≥ 0.8",
                met=ours_ratio >= 0.8,
            )
        )
    host.close()
    results.record(
        "bench_constrained",
        real="the default GGUF model; taskloom's decoder and stock llama-cpp-python's",
        simulated="nothing",
        rows=rows,
    )


if __name__ == "__main__":
    main()
