"""Grounded replies: ids and numbers a `generate` step writes must come from its context.

    python benchmarks/bench_grounding.py

Real: the default GGUF model (gemma-3-270m Q4_K_M) in a batching `ModelHost`, the
`generate` kind as a worker runs it, on benchmarks/data/replies.json (20 reply tasks
written for this check by another hand before the constraint was tuned: contexts of
extracted fields and knowledge-base passages holding order ids, invoice numbers, dates,
amounts and tracking codes; 7 with no id at all). Each task runs twice side by side,
grounded (`grounded: true`, the default: the decoder refuses a token that would write a
digit-carrying run not in the instruction or the context) and not. Simulated: nothing.

Printed: invented runs per reply (a digit-carrying run of the reply that the
instruction and context lack, `taskloom.chat.grounding`), replies that end at a
sentence end, replies that name the person, replies asked again (an answer that failed
validation is re-asked warm, so the reply would differ from run to run), replies the
kind's review flags for a quantity in words that the context does not support (changed
in a sentence restated from it, or a number word it lacks: `taskloom/tools/
quantities.py`; each printed, to be read: nothing here says whether a flag is right),
and the wall-time ratio.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import results

from taskloom.chat.grounding import Grounding
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.tools import run_task
from taskloom.tools.generate import SENTENCE_END, Inputs, source

DATA = Path(__file__).parent / "data" / "replies.json"


def reply_inputs(case: dict[str, Any], *, grounded: bool = True) -> dict[str, Any]:
    """A reply task's `generate` inputs."""
    return {
        "instruction": case["instruction"],
        "context": case["context"],
        "max_tokens": 128,
        "grounded": grounded,
    }


def main() -> None:
    cases: list[dict[str, Any]] = json.loads(DATA.read_text())["cases"]
    host = ModelHost(default_model_path(), n_ctx=2048, concurrency=8)
    rows: list[results.Row] = []
    measured: dict[bool, dict[str, float]] = {}
    for grounded in (False, True):
        host.reset_cache()

        def reply(case: dict[str, Any], grounded: bool = grounded) -> tuple[str, int, list[str]]:
            outcome = run_task("generate", reply_inputs(case, grounded=grounded), model=host)
            changed = outcome.meta.get("changed", [])
            return str(outcome.value["text"]), outcome.usage.calls, changed

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(reply, cases))
        wall_s = time.perf_counter() - started
        reasked = sum(calls > 1 for _, calls, _ in replies)
        flagged = sum(bool(changed) for _, _, changed in replies)
        label = "grounded" if grounded else "free"
        invented = ended = named = 0
        for case, (text, _, changed) in zip(cases, replies, strict=True):
            src = source(Inputs(instruction=case["instruction"], context=case["context"]))
            made_up = Grounding(src).invented(text)
            invented += len(made_up)
            is_ended = SENTENCE_END.search(text[-3:] if text else "") is not None
            ended += is_ended
            named += case["person"].split()[0].lower() in text.lower()
            if made_up:
                print(f"  {case['id']} ({label}): {made_up}")
            if changed:
                print(f"  {case['id']} ({label}) flagged for {changed}: {text!r}")
            if not is_ended:
                print(f"  {case['id']} ({label}) ends: ...{text[-60:]!r}")
        n = len(cases)
        print(
            f"{label}: {invented} invented runs in {n} replies ({invented / n:.2f} per reply);"
            f" {ended}/{n} end at a sentence end; {named}/{n} name the person;"
            f" {reasked}/{n} re-asked; {flagged}/{n} flagged for a quantity;"
            f" {wall_s:.1f} s"
        )
        measured[grounded] = {
            "invented": invented / n,
            "ended": ended / n,
            "named": named / n,
            "reasked": reasked / n,
            "flagged": flagged / n,
            "wall_s": wall_s,
        }
    host.close()
    on, off = measured[True], measured[False]
    print(f"ratio grounded / free wall time: {on['wall_s'] / off['wall_s']:.2f}")
    rows = [
        {
            "what": "generate: invented ids and numbers per reply, grounded",
            "measured": f"{on['invented']:.2f} (free: {off['invented']:.2f})",
            "target": "0",
            "met": on["invented"] == 0,
        },
        {
            "what": "generate: grounded replies that end at a sentence end / name the person",
            "measured": f"{on['ended']:.0%} / {on['named']:.0%} (free: {off['ended']:.0%} /"
            f" {off['named']:.0%})",
            "target": "reported",
            "met": None,
        },
        {
            "what": "generate: replies asked again (an invalid answer, sampled warm the second"
            " time), grounded",
            "measured": f"{on['reasked']:.0%} (free: {off['reasked']:.0%})",
            "target": "0%",
            "met": on["reasked"] == 0,
        },
        {
            "what": "generate: replies flagged for a quantity or a duration their context does not"
            " support (quantities.py), grounded",
            "measured": f"{on['flagged']:.0%} (free: {off['flagged']:.0%})",
            "target": "reported",
            "met": None,
        },
        {
            "what": "generate: wall time grounded ÷ free",
            "measured": f"{on['wall_s'] / off['wall_s']:.2f}×",
            "target": "reported",
            "met": None,
        },
    ]
    results.record(
        "bench_grounding",
        real="the default GGUF model, batched; the generate kind as a worker runs it, on"
        " benchmarks/data/replies.json (20 reply tasks, another hand)",
        simulated="nothing",
        rows=rows,
    )


if __name__ == "__main__":
    main()
