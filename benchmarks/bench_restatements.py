"""generate's review on written replies: does it flag the changed ones, and only those?

    python benchmarks/bench_restatements.py

Real: `generate`'s review, exactly as a worker runs it: the ids and numbers grounding
finds invented (`taskloom/chat/grounding.py`, less those that write a number the sources
state otherwise) and the quantities, dates and durations that a sentence changes or
adds (`taskloom/tools/quantities.py`), on benchmarks/data/restatements.json: 74 replies
to short contexts (airline, bank, clinic, lettings, software billing, gym, council, car
rental, insurance, school, utilities), in voices and domains the unit tests do not use;
39 state a quantity, a duration or a date their context does not support. Simulated:
the replies were written by hand, not by the model, so this measures the check, not how
often the model errs (bench_grounding runs the model).

Three parts (`split`), printed apart: `first` (44 replies, written before durations and
dates were compared; its first run found one bug, fixed before its numbers were kept),
`amounts` (12, written after the first part's results were read, before amounts were
compared, then used to change the check twice) and `fresh` (18, written after those
changes and run once: the part to report). For each: every miss and false flag, the
changed replies flagged (recall) and the faithful ones flagged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import results

from taskloom.tools import generate

DATA = Path(__file__).parent / "data" / "restatements.json"


def main() -> None:
    items: list[dict[str, Any]] = json.loads(DATA.read_text())["items"]
    rows: list[results.Row] = []
    for split in ("first", "amounts", "fresh"):
        part = [item for item in items if item["split"] == split]
        caught = false_flags = 0
        for item in part:
            inputs = generate.Inputs(instruction="Reply to the customer", context=item["source"])
            review = generate.review({"text": item["reply"]}, inputs, {}, None, [], None)  # type: ignore[arg-type]
            found = review.meta["invented"] + review.meta["changed"]
            if item["changed"] and found:
                caught += 1
            elif item["changed"]:
                print(f"  missed {item['id']}: {item['reply']!r}")
            elif found:
                false_flags += 1
                print(f"  false flag {item['id']}: {found}")
        changed = sum(item["changed"] for item in part)
        faithful = len(part) - changed
        print(
            f"{split}: changed replies flagged {caught}/{changed} ({caught / changed:.0%});"
            f" faithful replies flagged {false_flags}/{faithful} ({false_flags / faithful:.0%})"
        )
        rows.append(
            {
                "what": f"generate's review, {split} written replies: changed ones flagged /"
                " faithful ones flagged",
                "measured": f"{caught}/{changed} / {false_flags}/{faithful}",
                "target": "reported",
                "met": None,
            }
        )
    results.record(
        "bench_restatements",
        real="generate's review: grounding's invented runs and the quantities check",
        simulated="the replies: written by hand in other voices, not by the model",
        rows=rows,
    )


if __name__ == "__main__":
    main()
