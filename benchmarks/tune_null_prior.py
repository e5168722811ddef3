"""Re-check the absence check's `NULL_PRIOR` on the dev data's log-likelihoods, offline.

    python benchmarks/bench_kinds.py --split dev --kinds extract fill_slots --dump dev.json
    python benchmarks/bench_kinds.py --set fit --kinds extract fill_slots --dump fit.json
    python benchmarks/bench_kinds.py --set fresh --kinds extract --dump fresh.json
    python benchmarks/tune_null_prior.py dev.json fit.json fresh.json

Each dump row keeps the field's absence decision (`meta.absence`: the model's candidate,
log P(null) and log P(candidate)), so every prior of the grid is replayed without the
model: a candidate stands when log P(null) − log P(candidate) + prior ≤ 0. Real: the
default model's log-likelihoods as a worker computes them. Replayed, not rerun: the
span rescue (which uses the same prior on fields the model left null) stays as dumped.

Printed per set and kind, then pooled: fields right, present fields right and absent
fields nulled, at each prior; then the best pooled prior's gain over the shipped one,
with a 90% bootstrap interval over texts. Only dev rows are read.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from taskloom.labelled import same
from taskloom.tools.absence import NULL_PRIOR, p_absent

GRID = [-3.0 - 0.5 * i for i in range(13)]


def value_at(row: dict[str, Any], prior: float) -> Any:
    """The field's value had the check used `prior`."""
    decided = row.get("absence")
    if not decided or decided["candidate"] is None:
        return row["value"]
    null, value = decided["logprob_null"], decided["logprob_value"]
    if p_absent(null, value, decided["candidate"], prior=prior) > 0.5:  # the runtime's rule
        return None
    return row["value"] if decided["decision"] == "present" else decided["candidate"]


def accuracy(rows: list[dict[str, Any]], prior: float) -> tuple[float, float, float]:
    """Fields right, present fields right, absent fields nulled."""
    right = [same(value_at(r, prior), r["expected"]) for r in rows]
    present = [ok for ok, r in zip(right, rows, strict=True) if r["expected"] is not None]
    absent = [ok for ok, r in zip(right, rows, strict=True) if r["expected"] is None]
    return (
        sum(right) / len(right),
        sum(present) / max(len(present), 1),
        sum(absent) / max(len(absent), 1),
    )


def gain_interval(
    rows: list[dict[str, Any]], prior: float, draws: int = 2000
) -> tuple[float, float]:
    """90% bootstrap interval over texts of the fields-right gain of `prior` over NULL_PRIOR."""
    texts: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        kept = texts.setdefault((r["set"], r["kind"], r["id"]), [0, 0, 0])
        kept[0] += same(value_at(r, prior), r["expected"])
        kept[1] += same(value_at(r, NULL_PRIOR), r["expected"])
        kept[2] += 1
    counts = list(texts.values())
    rng = random.Random(0)
    gains = []
    for _ in range(draws):
        drawn = [rng.choice(counts) for _ in counts]
        gains.append(sum(d[0] - d[1] for d in drawn) / sum(d[2] for d in drawn))
    gains.sort()
    return gains[draws // 20], gains[draws - draws // 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="+", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for path in args.dumps:
        rows += json.loads(path.read_text())
    if any(r["split"] != "dev" for r in rows):
        raise SystemExit("tune_null_prior: only dev rows may be tuned on")
    if not any(r.get("absence") for r in rows):
        raise SystemExit("tune_null_prior: no absence decisions in the dumps; dump them again")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["kind"]), []).append(r)
    print("fields right (present right / absent nulled) at each prior")
    for (name, kind), part in sorted(groups.items()):
        absent = sum(r["expected"] is None for r in part)
        print(f"{name} {kind}: {len(part)} fields, {absent} absent")
        for prior in GRID:
            acc, present, nulled = accuracy(part, prior)
            print(f"  {prior:+.1f}: {acc:.1%} ({present:.1%} / {nulled:.1%})")
    print(f"pooled: {len(rows)} fields")
    best = max(GRID, key=lambda p: (accuracy(rows, p)[0], p == NULL_PRIOR))
    for prior in GRID:
        acc, present, nulled = accuracy(rows, prior)
        balanced = (present + nulled) / 2
        print(f"  {prior:+.1f}: {acc:.1%} ({present:.1%} / {nulled:.1%}), balanced {balanced:.1%}")
    low, high = gain_interval(rows, best)
    gain = accuracy(rows, best)[0] - accuracy(rows, NULL_PRIOR)[0]
    print(
        f"best pooled prior {best:+.1f}: {gain:+.1%} fields right over the shipped"
        f" {NULL_PRIOR:+.1f},"
        f" 90% interval over texts [{low:+.1%}, {high:+.1%}]"
    )


if __name__ == "__main__":
    main()
