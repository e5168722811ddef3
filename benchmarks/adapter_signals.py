"""Which signals an adapted model's own weights weigh, decided on a fresh split.

    python benchmarks/adapter_signals.py                     # run (about 25 min), then decide
    python benchmarks/adapter_signals.py --from answers.json # decide again on kept answers

`labelled.adapter_weights` fits an adapted model's own signal weights on its answers to
held-back examples. Whether those weights should weigh `extract`'s rival signals (the
second view's spans the value could have been instead, `tools/reask.py`) was undecided:
with them, the adapter's ranking of the test half collapsed in one run, and on the
splits one may tune on they were level. `data/fresh_extract.json` was written to decide
it (60 texts in voices no other set uses; split 'dev'; never reported as quality).

The run: two adapters, each trained on one half of the extraction set's dev half,
answer the other half (cross-fitted, nulls trusted, as lessons run adapters), and the
weights are fitted on those answers twice, over every signal and over those before the
rivals (`ADAPTER_SIGNALS`). An adapter trained on the whole dev half answers the fresh
split, the test half and the voice set. Printed per set: AURC and coverage at 95%
precision under each set of weights, the difference with a 90% bootstrap interval over
texts, and what the threshold each chose on the dev half accepts; and the fresh
split's accuracy on the base model as written, beside the adapter's. The fresh split
decides; the test half and the voice set are printed apart, not decided on.

Real: the default GGUF model, LoRA training on this machine's CPU, llama.cpp applying
the adapters, the extract kind and its review. Simulated: nothing; the labels are the
sets' gold answers. Nothing is recorded in results.json: this decides a setting.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from tempfile import TemporaryDirectory

from bench_adapter import graded
from bench_learn import cases

from taskloom import calibration
from taskloom.adapters.file import write_lora
from taskloom.adapters.train import Recipe, train
from taskloom.calibration import Calibration, KindCalibration, aurc, choose_threshold, coverage_at
from taskloom.chat.llama.adapters import AdaptedModel
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.labelled import ADAPTER_SIGNALS, Graded, Labelled, adapter_weights
from taskloom.lessons import training_pairs
from taskloom.tools.confidence import FEATURES

WAY = "nulls trusted"
SETS = ("fresh", "test", "voice")
BASE = "fresh, the base model as written"


def adapted(host: ModelHost, learn_from: list[Labelled], path: Path) -> AdaptedModel:
    """The host with an adapter trained on `learn_from` (one kind's), written to `path`."""
    trained = train(training_pairs(learn_from, host), model_path=host.path, recipe=Recipe())
    meta = {"kind": learn_from[0].step.kind}
    write_lora(trained.weights, path, alpha=trained.alpha, arch=trained.arch, meta=meta)
    return host.adapted(path)


def cross_fitted(host: ModelHost, examples: list[Labelled], tmp: Path) -> list[Graded]:
    """`examples` answered by adapters trained on the other half of them, nulls trusted."""
    halves = (examples[::2], examples[1::2])
    return [g for n, (a, b) in enumerate((halves, halves[::-1]))
            for g in graded(adapted(host, a, tmp / f"half-{n}.gguf"), b, WAY)]  # fmt: skip


def bootstrap(
    graded_: list[Graded], a: list[float], b: list[float], rng: random.Random
) -> tuple[float, float, float]:
    """AURC under confidences `a` minus under `b`, and its 90% interval over texts."""
    right = [g.is_right for g in graded_]
    texts = sorted({g.line for g in graded_})
    rows = {t: [i for i, g in enumerate(graded_) if g.line == t] for t in texts}
    diffs = []
    for _ in range(2000):
        idx = [i for t in rng.choices(texts, k=len(texts)) for i in rows[t]]
        r = [right[i] for i in idx]
        diffs.append(aurc([a[i] for i in idx], r) - aurc([b[i] for i in idx], r))
    diffs.sort()
    return aurc(a, right) - aurc(b, right), diffs[100], diffs[1899]


def answers(tmp: Path) -> dict[str, list[Graded]]:
    """The cross-fitted dev answers, and the whole-dev adapter's answers to each set."""
    host = ModelHost(default_model_path(), concurrency=4, n_ctx=2048)
    dev = cases("extract", "dev")
    fresh = cases("extract", "dev", source="fresh")
    found = {BASE: graded(host, fresh, "absence checked")}
    found["dev"] = cross_fitted(host, dev, tmp)
    whole = adapted(host, dev, tmp / "whole.gguf")
    for name, examples in zip(
        SETS,
        (fresh, cases("extract", "test"), cases("extract", "heldout", source="voice")),
        strict=True,
    ):
        found[name] = graded(whole, examples, WAY)
    return found


def decide(found: dict[str, list[Graded]]) -> None:
    weighs = {"every signal": FEATURES, "before the rivals": ADAPTER_SIGNALS}
    fitted = {}
    for name, signals in weighs.items():
        weights, oof = adapter_weights("extract", found["dev"], calibration.load(), signals=signals)
        threshold, _, _ = choose_threshold(
            [g.confidence or 0.0 for g in oof], [g.is_right for g in oof]
        )
        fitted[name] = (Calibration(kinds={"extract": KindCalibration(weights=weights)}), threshold)
        print(f"weights over {name}: threshold on the dev half {threshold}")
    if BASE in found:
        print(f"{BASE}: {sum(g.is_right for g in found[BASE]) / len(found[BASE]):.1%} right")
    rng = random.Random(7)
    for s in SETS:
        right = [g.is_right for g in found[s]]
        sure = {
            name: [cal.field_confidence("extract", g.evidence) or 0.0 for g in found[s]]  # type: ignore[arg-type]
            for name, (cal, _) in fitted.items()
        }
        print(f"{s}: {len(right)} fields, {sum(right) / len(right):.1%} right")
        for name, (_, threshold) in fitted.items():
            kept = [ok for ok, c in zip(right, sure[name], strict=True)
                    if threshold is not None and c >= threshold]  # fmt: skip
            accepted = f"{len(kept)} accepted, {sum(kept)} right" if kept else "none accepted"
            print(
                f"  {name}: AURC {aurc(sure[name], right):.3f}, coverage at 95%"
                f" {coverage_at(sure[name], right):.1%}; its threshold: {accepted}"
            )
        diff, low, high = bootstrap(found[s], sure["every signal"], sure["before the rivals"], rng)
        print(f"  AURC, every signal − before the rivals: {diff:+.3f} [{low:+.3f}, {high:+.3f}]")


def kept_or_run(
    source: Path | None, keep: Path | None, run: Callable[[Path], dict[str, list[Graded]]]
) -> dict[str, list[Graded]]:
    """The answers kept in `source` (`--from`), or `run` in a scratch folder; written to
    `keep` (`--keep`) when asked."""
    if source:
        kept = json.loads(source.read_text())
        found = {k: [Graded(**g) for g in v] for k, v in kept.items()}
    else:
        with TemporaryDirectory() as tmp:
            found = run(Path(tmp))
    if keep:
        keep.write_text(json.dumps({k: [asdict(g) for g in v] for k, v in found.items()}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="answers kept by --keep")
    parser.add_argument("--keep", type=Path, help="write the answers here")
    args = parser.parse_args()
    decide(kept_or_run(args.source, args.keep, answers))


if __name__ == "__main__":
    main()
