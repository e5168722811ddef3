"""Fit the shipped calibration (taskloom/calibration.json) on dev data, and only that.

    python benchmarks/bench_kinds.py --split dev --kinds extract fill_slots classify \\
        --dump dev.json
    python benchmarks/bench_kinds.py --set fit --kinds extract fill_slots --dump fit.json
    python benchmarks/fit_confidence.py dev.json fit.json   # prints, then writes the file
    python benchmarks/fit_confidence.py dev.json --kinds extract   # refit one, keep the rest
    python benchmarks/fit_confidence.py dev.json fit.json --keep-mapping   # thresholds only

The dev data are the eval sets' dev halves and the fitting sets (benchmarks/data/fit_*.json,
other voices and one more schema or task), so that no calibrator is fitted on one voice
alone (what that changed: docs/calibration.md).

Per kind: extract and fill_slots get logistic weights over each field's signals
(taskloom/tools/confidence.py); classify gets Platt scaling of its own confidence.
`calibration.fit_kind` chooses each threshold on out-of-fold confidences (5 folds by
case), so no threshold is picked on answers its weights were fitted to: the lowest
confidence whose accepted answers reach 95% precision with the Clopper–Pearson lower
bound at 90%, and the frontier of thresholds a run may choose among for another
target (`TASKLOOM_TARGET_PRECISION`). Nothing here reads a test half or a held-out set:
rows of any other split are refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from taskloom import calibration
from taskloom.calibration import Calibration
from taskloom.tools.confidence import FEATURES, Signals

KINDS = ["extract", "fill_slots", "classify"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="+", type=Path)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=calibration.DEFAULT_PATH)
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    parser.add_argument(
        "--keep-mapping", action="store_true",
        help="keep each kind's weights or scale as --out has them; choose only its threshold "
        "and frontier on the dumps (out of fold, as always)",
    )  # fmt: skip
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=KINDS,
        help="refit these; the others keep the calibration in --out",
    )  # fmt: skip
    args = parser.parse_args()
    dump: list[dict[str, Any]] = []
    for path in args.dumps:
        dump += json.loads(path.read_text())
    if any(r["split"] != "dev" for r in dump):
        raise SystemExit("fit_confidence: only dev-half rows may be fitted on")
    kept = Calibration.model_validate_json(args.out.read_text()) if args.out.exists() else None
    kinds = {k: c for k, c in (kept.kinds if kept else {}).items() if k not in args.kinds}
    for kind in args.kinds:
        rows = [r for r in dump if r["kind"] == kind and (r.get("signals") or "raw" in r)]
        if not rows:
            continue
        if kind == "classify":
            inputs: list[Any] = [float(r["raw"]) for r in rows]
        else:
            inputs = [Signals.from_meta(r["signals"]).vector() for r in rows]
        right = [bool(r["right"]) for r in rows]
        fitted, oof = calibration.fit_kind(
            kind, inputs, right, [r["id"] for r in rows], l2=args.l2,
            base=kept.kinds.get(kind) if kept else None,  # its adapted weights stay
        )  # fmt: skip
        was = kept.kinds.get(kind) if kept else None
        if args.keep_mapping and was is not None:
            refit = fitted.weights or list(fitted.scale or [])
            same = was.weights or list(was.scale or [])
            moved = max((abs(a - b) for a, b in zip(refit, same, strict=False)), default=0.0)
            print(f"{kind}: mapping kept (a refit would move it by up to {moved:.3f})")
            fitted = fitted.model_copy(update={"weights": was.weights, "scale": was.scale})
        kinds[kind] = fitted
        print(
            f"{kind}: {len(rows)} answers, {sum(right)} right; out of fold: coverage at 95%"
            f" {calibration.coverage_at(oof, right):.1%}, AURC"
            f" {calibration.aurc(oof, right):.3f}, ECE"
            f" {calibration.calibration_error(oof, right):.3f}; threshold {fitted.threshold}"
            f" accepts {fitted.coverage:.1%} at {fitted.precision:.1%}"
        )
        for target in (0.9, 0.85, 0.8):
            there = fitted.at(target, was=calibration.TARGET_PRECISION, level=calibration.LEVEL)
            print(
                f"  at {target:.0%}: threshold {there.threshold}, accepts {there.coverage:.1%}"
                f" at {there.precision:.1%}"
            )
        if fitted.weights:
            print(
                "  weights: "
                + ", ".join(f"{n} {w:+.2f}" for n, w in zip(FEATURES, fitted.weights, strict=False))
            )
        if fitted.scale:
            print(f"  scale: {fitted.scale}")
    result = Calibration(
        about="fitted by benchmarks/fit_confidence.py on the dev halves of"
        " benchmarks/data/eval_*.json and the fitting sets benchmarks/data/fit_*.json"
        " (default model, gemma-3-270m Q4_K_M)",
        kinds={k: kinds[k] for k in KINDS if k in kinds},
    )
    if not args.dry_run:
        args.out.write_text(result.to_json())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
