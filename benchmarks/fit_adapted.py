"""Fit the shipped calibration's adapted weights, and decide on a fresh split whether they rank.

    python benchmarks/fit_adapted.py --keep answers.json         # run (about 20 min), decide
    python benchmarks/fit_adapted.py --from answers.json --write # decide again; write if adopted
    python benchmarks/fit_adapted.py --kind fill_slots           # the same for fill_slots

An adapter lesson gets its own signal weights only from 120 held-back fields
(`labelled.adapter_weights`). With fewer, as in a 50-step loop, its answers were ranked
by the calibration's weights, which were fitted on the base model's answers and rank an
adapted model's badly (docs/learning.md). This fits a kind's `adapted_weights` once,
offline: two adapters, each trained on one half of the dev data (the eval set's dev half
and the fitting set, two voices), answer the other half (cross-fitted,
nulls trusted, as lessons run adapters), and logistic weights over `ADAPTER_SIGNALS` are
fitted on those answers. An adapter trained on the eval set's dev half (as the loop's
is) then answers the fresh split, the test half and the voice set, and each set's
answers are ranked by the calibration's base weights and by the adapted ones.

The rule, written before the run: adopt when the fresh split's AURC under the adapted
weights is at least 0.01 lower than under the base weights and the 90% bootstrap
interval over texts (2000 draws) is above zero. The test half and the voice set are
printed apart, not decided on. `--write` stores the weights in taskloom/calibration.json
only when the rule adopts them. `extract` was decided on data/fresh_extract.json;
`fill_slots` on data/fresh_slots.json (60 requests in voices no other slot set uses,
written for it, with the same rule, committed before its run).

Real: the default GGUF model, LoRA training on this machine's CPU, llama.cpp applying
the adapters, the kind and its review. Simulated: nothing; the labels are the sets'
gold answers. Nothing is recorded in results.json: this fits a shipped setting.
"""

from __future__ import annotations

import argparse
import random
from functools import partial
from pathlib import Path

from adapter_signals import WAY, adapted, bootstrap, cross_fitted, kept_or_run
from bench_adapter import graded
from bench_learn import cases

from taskloom import calibration
from taskloom.calibration import (
    Calibration,
    KindCalibration,
    aurc,
    choose_threshold,
    coverage_at,
)
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.labelled import Graded, adapter_weights

SETS = ("fresh", "test", "voice")
BAR = 0.01


def answers(kind: str, tmp: Path) -> dict[str, list[Graded]]:
    """The dev data's cross-fitted answers, and the eval dev adapter's answers to each set."""
    host = ModelHost(default_model_path(), concurrency=4, n_ctx=2048)
    dev = cases(kind, "dev")
    found = {"dev": cross_fitted(host, dev + cases(kind, "dev", source="fit"), tmp)}
    whole = adapted(host, dev, tmp / "whole.gguf")
    for name, examples in zip(
        SETS,
        (
            cases(kind, "dev", source="fresh"),
            cases(kind, "test"),
            cases(kind, "heldout", source="voice"),
        ),
        strict=True,
    ):
        found[name] = graded(whole, examples, WAY)
    return found


def decide(kind: str, found: dict[str, list[Graded]]) -> list[float] | None:
    """Print the comparison; the adapted weights when the rule adopts them."""
    base = calibration.load()
    weights, oof = adapter_weights(kind, found["dev"], base)
    if weights is None:
        print("too few cross-fitted answers to fit weights")
        return None
    threshold, _, _ = choose_threshold(
        [g.confidence or 0.0 for g in oof], [g.is_right for g in oof]
    )
    print(f"adapted weights fitted on {len(oof)} cross-fitted fields; their threshold {threshold}")
    adapted_cal = Calibration(kinds={kind: KindCalibration(weights=weights)})
    rng = random.Random(7)
    adopted = False
    for s in SETS:
        right = [g.is_right for g in found[s]]
        sure = {
            name: [cal.field_confidence(kind, g.evidence) or 0.0 for g in found[s]]  # type: ignore[arg-type]
            for name, cal in (("base", base), ("adapted", adapted_cal))
        }
        print(f"{s}: {len(right)} fields, {sum(right) / len(right):.1%} right")
        for name, conf in sure.items():
            print(
                f"  {name} weights: AURC {aurc(conf, right):.3f},"
                f" coverage at 95% {coverage_at(conf, right):.1%}"
            )
        diff, low, high = bootstrap(found[s], sure["base"], sure["adapted"], rng)
        print(f"  AURC base − adapted: {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
        if s == "fresh":
            adopted = diff >= BAR and low > 0
    print(f"adopted: {adopted} (the fresh split decides: at least {BAR} and the interval above 0)")
    return weights if adopted else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="answers kept by --keep")
    parser.add_argument("--keep", type=Path, help="write the answers here")
    parser.add_argument("--write", action="store_true", help="store adopted weights")
    parser.add_argument("--kind", choices=("extract", "fill_slots"), default="extract")
    args = parser.parse_args()
    kind = args.kind
    weights = decide(kind, kept_or_run(args.source, args.keep, partial(answers, kind)))
    if args.write and weights is not None:
        path = calibration.DEFAULT_PATH
        shipped = Calibration.model_validate_json(path.read_text())
        shipped.kinds[kind].adapted_weights = [round(w, 5) for w in weights]
        path.write_text(shipped.to_json())
        print(f"wrote {kind}'s adapted weights to {path}")


if __name__ == "__main__":
    main()
