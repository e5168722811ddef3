"""An adapter learned from the dev half, measured on the test half and the voice set.

    python benchmarks/bench_adapter.py            # extract (the issue's +15-point goal)
    python benchmarks/bench_adapter.py --time     # the training time of 200 answers

`--time` trains on 200 labelled answers (both halves of the extraction and slot-filling
sets: a timing run, whose adapter is thrown away unmeasured) and reports the wall time,
the model's load included, with nothing projected.

`taskloom learn --adapter`'s training (`adapters.train`, the default recipe) on every
labelled answer of the extraction set's dev half (all three schemas, one adapter), then
the test half (never trained on) and the held-out voice set (written in another voice)
run on the default model as written and on the adapted model, side by side:

- fields right, with absence decided by the runtime (the default) and with the model's
  own nulls trusted (`absence: false`, which a lesson picks where it measured better);
- the adapter run the way (`WAYS`) that was right more often on the dev half,
  cross-fitted, as a lesson chooses on held-back answers: never chosen on the answers
  it is reported on;
- coverage at 95% precision, with the shipped calibration's signal weights and with the
  adapted model's own (`labelled.adapter_weights`, what `taskloom learn --adapter` fits
  on held-back answers). Here they are cross-fitted: two more adapters, each trained on
  one half of the dev half, answer the other half (in every way: these answers choose
  the way too), and the weights are fitted on those answers, so no weight is fitted on
  an answer the adapter was trained on. The threshold they choose on the dev half is
  then applied to the test half and the voice set: what a deployment would accept, and
  how precise that is.

`bench_learn --adapter` runs the whole loop (stream, bank, held-back choice); this one
measures what the adapter itself does, with no held-back split deciding whether it is
used. Real: the default GGUF model, the training (torch on this machine's CPU), the
adapter file, llama.cpp applying it, the kinds and the review. Simulated: nothing; the
labels are the eval set's gold answers (in a deployment, the LLM's and reviewers').
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import results
from bench_learn import cases, minutes_for_200, scores

from taskloom import calibration
from taskloom.adapters.file import write_lora
from taskloom.adapters.train import Recipe, train
from taskloom.calibration import Calibration, KindCalibration, choose_threshold
from taskloom.chat import ChatModel
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.labelled import Graded, Labelled, adapter_weights, confidence_of, run
from taskloom.lessons import training_pairs

WAYS: dict[str, dict[str, object]] = {
    "absence checked": {},
    "nulls trusted": {"absence": False},
}
"""How a step may handle nulls, as a lesson may run it: the runtime's check (the
default), or the model's own nulls trusted (`absence: false`)."""


def graded(
    model: ChatModel, examples: list[Labelled], way: str = "absence checked"
) -> list[Graded]:
    """Each example run and graded, its nulls handled `way` (`WAYS`)."""
    examples = [
        e.model_copy(
            update={"step": e.step.model_copy(update={"inputs": {**e.step.inputs, **WAYS[way]}})}
        )
        for e in examples
    ]
    return run(examples, model=model, calibration=calibration.load(), concurrency=4)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="time training on 200 answers")
    args = parser.parse_args()
    host = ModelHost(default_model_path(), concurrency=4, n_ctx=2048)
    if args.time:
        return time_200(host)
    dev = cases("extract", "dev")
    started = time.perf_counter()
    trained = train(training_pairs(dev, host), model_path=host.path, recipe=Recipe())
    print(
        f"trained on {len(dev)} answers: {trained.steps} steps in {trained.seconds:.0f} s"
        f" ({trained.device}; the model's load {trained.load_seconds:.0f} s), loss"
        f" {trained.first_loss} →"
        f" {trained.last_loss}"
    )
    rows: list[results.Row] = []
    with TemporaryDirectory() as tmp:
        path = write_lora(
            trained.weights, Path(tmp) / "adapter.gguf", alpha=trained.alpha,
            arch=trained.arch, meta={"kind": "extract"},
        )  # fmt: skip
        adapted = host.adapted(path)
        way, weighed, accuracy = crossfit(host, dev, Path(tmp))
        on_dev = ", ".join(f"{w} {a:.1%}" for w, a in accuracy.items())
        print(f"ways on the dev half (cross-fitted): {on_dev}; chosen: {way}")
        rows.append(
            {
                "what": "extract (dev, cross-fitted): fields right per way of handling nulls,"
                " and the way chosen for the test half and the voice set",
                "measured": f"{on_dev}; chosen: {way}",
                "target": "reported",
                "met": None,
            }
        )
        for label, examples in (
            ("test", cases("extract", "test")),
            ("voice", cases("extract", "heldout", source="voice")),
        ):
            bases, answers = {}, {}
            for how in WAYS:
                b = scores(graded(host, examples, how))
                answers[how] = graded(adapted, examples, how)
                a = scores(answers[how])
                bases[how] = b
                gain = (a["accuracy"] - b["accuracy"]) * 100
                print(
                    f"extract {label}, {how}: right {b['accuracy']:.1%} → {a['accuracy']:.1%}"
                    f" ({gain:+.1f} points); coverage@95 {b['coverage']:.1%} →"
                    f" {a['coverage']:.1%}"
                )
                rows.append(
                    {
                        "what": f"extract ({label}, {how}): right with the adapter − without,"
                        " points",
                        "measured": f"{gain:+.1f} ({b['accuracy']:.1%} → {a['accuracy']:.1%})",
                        "target": "reported",  # the goal's row compares with the base as run
                        "met": None,
                    }
                )
                rows.append(
                    {
                        "what": f"extract ({label}, {how}): coverage at 95% precision,"
                        " without → with the adapter",
                        "measured": f"{b['coverage']:.1%} → {a['coverage']:.1%}",
                        "target": "reported",
                        "met": None,
                    }
                )
            # the measure: the base model as steps run (absence checked) against
            # the adapter as its lesson would run it, the way chosen on the dev half, with
            # its own weights
            base = bases["absence checked"]
            best = weighed.score(answers[way])
            print(
                f"extract {label}, {way}, the adapter's own weights: coverage@95"
                f" {best['coverage']:.1%}; {weighed.accepts(answers[way])}"
            )
            rows.append(
                {
                    "what": f"extract ({label}): answers accepted by the threshold the"
                    " adapter's own weights chose on the dev half",
                    "measured": weighed.accepts(answers[way]),
                    "target": "reported",
                    "met": None,
                }
            )
            gain = (best["accuracy"] - base["accuracy"]) * 100
            print(f"extract {label}: base as written → adapter, {way}: {gain:+.1f} points")
            rows.append(
                {
                    "what": f"extract ({label}): right, the adapter the way the dev half chose"
                    " − the base as written, points",
                    "measured": f"{gain:+.1f} ({base['accuracy']:.1%} → {best['accuracy']:.1%})",
                    "target": "≥ +15",
                    "met": round(gain, 1) >= 15,  # as printed: 30 of 200 fields is 15.0, not 14.99…
                }
            )
            rows.append(
                {
                    "what": f"extract ({label}): coverage at 95% precision, the base as"
                    " written → the adapter the way the dev half chose, its own weights",
                    "measured": f"{base['coverage']:.1%} → {best['coverage']:.1%}",
                    "target": "≥ 1.5×",
                    "met": best["coverage"] >= 1.5 * base["coverage"] and best["coverage"] > 0,
                }
            )
    minutes = minutes_for_200(trained.seconds, trained.load_seconds, len(dev))
    rows.append(
        {
            "what": f"adapter training, 200 examples × {Recipe().epochs} passes, 2 cores"
            f" (projected from {len(dev)}: the model's load once, the rest × {200 / len(dev):g})",
            "measured": f"{minutes:.1f} min",
            "target": "≤ 10 min",
            "met": minutes <= 10,
        }
    )
    print(f"all in {time.perf_counter() - started:.0f} s")
    results.record(
        "bench_adapter",
        real="default GGUF model, LoRA training on the CPU, the adapter file, llama.cpp"
        " applying it, the kinds and the review",
        simulated="nothing (labels: the eval set's gold answers)",
        rows=rows,
    )


@dataclass(frozen=True)
class Weighed:
    """The adapted model's own signal weights and the threshold they chose (dev half)."""

    weights: list[float] | None
    threshold: float | None

    def rescored(self, answers: list[Graded]) -> list[Graded]:
        """The answers with their confidences recomputed under these weights."""
        if self.weights is None:
            return answers
        own = Calibration(kinds={"extract": KindCalibration(weights=self.weights)})
        return [replace(g, confidence=confidence_of(own, "extract", g.evidence)) for g in answers]

    def score(self, answers: list[Graded]) -> dict[str, float]:
        """The answers scored under these weights."""
        return scores(self.rescored(answers))

    def accepts(self, answers: list[Graded]) -> str:
        """What the threshold accepts of the answers, and how precise that is."""
        if self.weights is None or self.threshold is None:
            return "none (no threshold reached 95% with the bound on the dev half)"
        kept = [g for g in self.rescored(answers) if (g.confidence or 0.0) >= self.threshold]
        right = sum(g.is_right for g in kept)
        return f"{len(kept) / len(answers):.1%} accepted, {right / max(len(kept), 1):.1%} right"


def crossfit(
    host: ModelHost, dev: list[Labelled], tmp: Path
) -> tuple[str, Weighed, dict[str, float]]:
    """Two adapters, each trained on one half of `dev`, answer the other half in each of
    the `WAYS`. The way right most often is chosen (as `learn` chooses on held-back
    answers; ties to the earlier way), the adapted model's weights are fitted on its
    answers (`adapter_weights`) and choose a threshold there. Returns the way, its
    weights and threshold, and each way's accuracy."""
    halves = (dev[::2], dev[1::2])
    found: dict[str, list[Graded]] = {way: [] for way in WAYS}
    for n, (learn_from, answer) in enumerate((halves, halves[::-1])):
        trained = train(training_pairs(learn_from, host), model_path=host.path, recipe=Recipe())
        path = write_lora(
            trained.weights, tmp / f"half-{n}.gguf", alpha=trained.alpha, arch=trained.arch,
            meta={"kind": "extract"},
        )  # fmt: skip
        for way in found:
            found[way] += graded(host.adapted(path), answer, way)
    accuracy = {way: scores(answers)["accuracy"] for way, answers in found.items()}
    way = max(WAYS, key=accuracy.__getitem__)
    weights, rescored = adapter_weights("extract", found[way], calibration.load())
    threshold, _, _ = choose_threshold(
        [g.confidence or 0.0 for g in rescored], [g.is_right for g in rescored]
    )
    return way, Weighed(weights, threshold if weights is not None else None), accuracy


def time_200(host: ModelHost) -> None:
    """The issue's training-time measure, run: 200 answers × the recipe's passes."""
    answers = [e for kind in ("extract", "fill_slots") for half in ("dev", "test")
               for e in cases(kind, half)][:200]  # fmt: skip
    trained = train(training_pairs(answers, host), model_path=host.path, recipe=Recipe())
    minutes = trained.seconds / 60
    print(
        f"trained on {len(answers)} answers: {trained.steps} steps in {minutes:.1f} min"
        f" ({trained.device}; the model's load {trained.load_seconds:.0f} s)"
    )
    results.record(
        "bench_adapter_time",
        real="LoRA training on this machine's CPU, the default GGUF model, 200 labelled"
        " answers of the extraction and slot-filling sets",
        simulated="nothing (a timing run: the adapter is not measured)",
        rows=[
            {
                "what": f"adapter training, {len(answers)} answers × {Recipe().epochs} passes,"
                " 2 cores (run, the model's load included)",
                "measured": f"{minutes:.1f} min ({trained.device})",
                "target": "≤ 10 min",
                "met": minutes <= 10,
            }
        ],
    )


if __name__ == "__main__":
    main()
