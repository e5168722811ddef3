"""The SLM kinds' quality on the evaluation sets, and what absence decided by the runtime costs.

    python benchmarks/bench_kinds.py                 # the test halves (what is reported)
    python benchmarks/bench_kinds.py --split dev     # the dev halves (for tuning)
    python benchmarks/bench_kinds.py --set voice     # the held-out sets in another voice
    python benchmarks/bench_kinds.py --split dev --shots similar --kinds extract

Real: the default GGUF model (gemma-3-270m Q4_K_M) in a `ModelHost` with continuous
batching (`--concurrency`, default 8): the cases of a kind run as concurrent steps,
through `run_task`, exactly as a worker runs them. Nothing is simulated. The sets are
`benchmarks/data/eval_{extract,slots,classify,filter}.json`, written by hand (see
benchmarks/README.md), each split into a dev half (tuning) and a test half.

The held-out sets (`--set voice`, benchmarks/data/voice_*.json) were written before any
tuning of the confidence, by another hand, in other voices (terse chat, forwarded
emails with signatures, non-native English); they use the same schemas and tasks and
are reported apart.

The fitting sets (`--set fit --kinds extract fill_slots --dump FILE`,
benchmarks/data/fit_*.json) are texts in still other voices (and one more schema or
task), all of split dev: the calibrators are fitted on them beside the dev halves, and
they are never reported.

Trust: every answer's confidence (per field for extract and fill_slots, per step for
classify) is ranked, and printed are the coverage at 95% precision (the largest share
of the most confident answers whose precision is at least 95%), the area under the
risk–coverage curve, the expected calibration error, and how many answers the shipped
thresholds accept and how many of those are right. `--plots DIR` draws each kind's
risk–coverage curve (PNG).

Printed per kind: accuracy; for extract and fill_slots, present fields right and
absent → null precision and recall (a null is "absent" returned; a filter case with no
relevant passage counts as absent when nothing is kept); for classify, the expected
calibration error of `confidence` (10 equal-width bins). Extraction runs twice, with and
without the runtime's review of the answer (`is_reviewed=False`: no absence check, no
span widening or rescue, no second view, no confidence), side by side: the ratio of
prompt tokens evaluated and of wall time is the check's cost.

`--shots similar` picks each case's two examples from the dev half by word overlap
(leaving the case itself out), instead of the fixed examples of its schema or task.
`--dump FILE` writes every field's signals and whether it was right (fit_confidence.py
fits the shipped calibration on the dev halves' dump).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import results

from taskloom import calibration
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.labelled import same
from taskloom.tools import Outcome, run_task

DATA = Path(__file__).parent / "data"
GOAL = 0.90


SET = "eval"  # or "voice", "fit", "fresh" (--set)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{SET}_{name}.json").read_text())
    return data


class Trust:
    """Confidences and whether each answer was right, per kind, for the trust rows."""

    def __init__(self) -> None:
        self.pairs: dict[str, list[tuple[float, bool, bool]]] = {}

    def add(self, kind: str, confidence: float | None, right: bool, accepted: bool | None) -> None:
        sure = 0.0 if confidence is None else confidence
        self.pairs.setdefault(kind, []).append((sure, right, bool(accepted)))

    def rows(self, kind: str, plots: Path | None) -> list[results.Row]:
        pairs = self.pairs.get(kind, [])
        if not pairs:
            return []
        conf = [c for c, _, _ in pairs]
        right = [ok for _, ok, _ in pairs]
        cov = calibration.coverage_at(conf, right)
        area = calibration.aurc(conf, right)
        ece = calibration.calibration_error(conf, right)
        kept = [ok for _, ok, a in pairs if a]
        precision = sum(kept) / len(kept) if kept else float("nan")
        print(
            f"{kind} trust: {len(pairs)} answers, {sum(right)} right; coverage at 95% precision"
            f" {cov:.1%}; AURC {area:.3f}; ECE {ece:.3f}; accepted {len(kept)}"
            f" ({len(kept) / len(pairs):.1%}), {sum(kept)} right ({precision:.1%})"
        )
        table = calibration.risk_coverage(conf, right)
        print(
            "  coverage → precision: "
            + ", ".join(f"{r['coverage']:.0%}→{r['precision']:.0%}" for r in table[1::2])
        )
        if plots is not None:
            draw(kind, table, plots)
        goal = 0.60 if kind == "classify" else 0.50
        return [
            row(f"{kind}: coverage at 95% precision", cov, goal),
            {
                "what": f"{kind}: area under the risk–coverage curve",
                "measured": f"{area:.3f}",
                "target": "≤ 0.08" if kind == "extract" else "reported",
                "met": area <= 0.08 if kind == "extract" else None,
            },
            {
                "what": f"{kind}: expected calibration error",
                "measured": f"{ece:.3f}",
                "target": "≤ 0.05",
                "met": ece <= 0.05,
            },
            {
                "what": f"{kind}: accepted by the shipped thresholds (precision)",
                "measured": f"{len(kept) / len(pairs):.1%} ({precision:.1%})",
                "target": "reported",
                "met": None,
            },
            *(lowered(kind, conf, right, target) for target in LOWER_TARGETS),
        ]


LOWER_TARGETS = (0.9, 0.8)
"""Target precisions a run may ask for (`--precision`): is each met on these texts?"""


def lowered(kind: str, conf: list[float], right: list[bool], target: float) -> results.Row:
    """What the shipped calibration's frontier accepts at a lower target, and whether
    the precision of those answers reaches it here (texts it was not chosen on)."""
    threshold = calibration.load(target=target).threshold(kind)
    kept = [ok for c, ok in zip(conf, right, strict=True) if calibration.accepts(c, threshold)]
    precision = sum(kept) / len(kept) if kept else float("nan")
    print(
        f"  at a {target:.0%} target: threshold {threshold}, accepts {len(kept)}"
        f" ({len(kept) / len(conf):.1%}), {precision:.1%} right"
    )
    return {
        "what": f"{kind}: accepted at a {target:.0%} target (precision)",
        "measured": f"{len(kept) / len(conf):.1%} ({precision:.1%})" if kept else "none",
        "target": f"precision ≥ {target:.0%}",
        "met": precision >= target if kept else None,
    }


def draw(kind: str, table: list[dict[str, float]], out: Path) -> None:
    """The risk–coverage curve of one kind, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot([r["coverage"] for r in table], [1 - r["precision"] for r in table], marker=".")
    ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("coverage (most confident answers kept)")
    ax.set_ylabel("risk (error rate of those kept)")
    ax.set_title(f"{kind}: risk–coverage ({SET}, {kind})")
    fig.tight_layout()
    fig.savefig(out / f"risk_coverage_{SET}_{kind}.png", dpi=110)
    plt.close(fig)


def is_absent(expected: Any) -> bool:
    return expected is None


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def similar(text: str, pool: list[dict[str, Any]], k: int = 2) -> list[dict[str, Any]]:
    """The `k` pool cases sharing most words with `text` (Jaccard), the case itself left out."""
    mine = words(text)
    ranked = sorted(
        (c for c in pool if c["text"] != text),
        key=lambda c: -len(mine & words(c["text"])) / max(len(mine | words(c["text"])), 1),
    )
    return ranked[:k]


class Fields:
    """Counts over fields (or slots): right, present right, absent → null."""

    def __init__(self) -> None:
        self.right = self.total = 0
        self.present_right = self.present = 0
        self.null_and_absent = self.nulls = self.absent = 0

    def add(self, got: Any, expected: Any) -> None:
        ok = same(got, expected)
        self.right += ok
        self.total += 1
        absent = is_absent(expected)
        if absent:
            self.absent += 1
        else:
            self.present += 1
            self.present_right += ok
        if got is None:
            self.nulls += 1
            self.null_and_absent += absent

    def rows(self, kind: str, what: str) -> list[results.Row]:
        acc = self.right / max(self.total, 1)
        present = self.present_right / max(self.present, 1)
        precision = self.null_and_absent / max(self.nulls, 1)
        recall = self.null_and_absent / max(self.absent, 1)
        print(
            f"{kind}: {self.right}/{self.total} {what} right ({acc:.1%}); present"
            f" {self.present_right}/{self.present} ({present:.1%}); absent→null precision"
            f" {precision:.1%} ({self.null_and_absent}/{self.nulls}), recall {recall:.1%}"
            f" ({self.null_and_absent}/{self.absent})"
        )
        return [
            row(f"{kind}: {what} right", acc, GOAL),
            row(f"{kind}: present {what} right", present, GOAL),
            row(f"{kind}: absent → null recall", recall, GOAL),
            row(f"{kind}: absent → null precision", precision, None),
        ]


def row(what: str, value: float, target: float | None) -> results.Row:
    return {
        "what": what,
        "measured": f"{value:.1%}",
        "target": f"≥ {target:.0%}" if target is not None else "reported",
        "met": value >= target if target is not None else None,
    }


def run_all(
    host: ModelHost, jobs: list[Callable[[], Outcome]], concurrency: int
) -> tuple[list[Outcome], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda job: job(), jobs))
    return outcomes, time.perf_counter() - started


def bench_extract(host: ModelHost, args: argparse.Namespace, dump: list[Any]) -> list[results.Row]:
    data = load("extract")
    cases = [c for c in data["cases"] if c["split"] == args.split]
    dev = [c for c in data["cases"] if c["split"] == "dev"]

    def job(case: dict[str, Any], absence: bool) -> Callable[[], Outcome]:
        if args.shots == "similar":
            pool = [c for c in dev if c["schema"] == case["schema"]]
            examples = [
                {
                    "input": {"text": c["text"]},
                    "output": {k: first(v) for k, v in c["expected"].items()},
                }
                for c in similar(case["text"], pool)
            ]
        else:
            examples = data["examples"][case["schema"]]
        inputs = {"text": case["text"], "copy": True, "examples": examples}
        schema = data["schemas"][case["schema"]]
        return lambda: run_task("extract", inputs, output=schema, model=host, is_reviewed=absence)

    rows: list[results.Row] = []
    spent = {}
    for absence in (False, True):
        host.reset_cache()
        outcomes, wall_s = run_all(host, [job(c, absence) for c in cases], args.concurrency)
        fields = Fields()
        for case, outcome in zip(cases, outcomes, strict=True):
            for k, expected in case["expected"].items():
                fields.add(outcome.value[k], expected)
                if absence:
                    keep(args, dump, "extract", case, k, outcome.value[k], expected, outcome)
        evaluated = sum(o.usage.prompt_tokens_evaluated for o in outcomes)
        spent[absence] = (evaluated, wall_s)
        label = "extract" if absence else "extract (review off)"
        print(f"{label}: {len(cases)} texts in {wall_s:.1f} s, {evaluated} prompt tokens evaluated")
        got = fields.rows(label, "fields")
        if absence:
            rows += got
        else:
            rows.append(got[0] | {"target": "reported", "met": None})
            rows.append(got[2] | {"target": "reported", "met": None})
    tokens = spent[True][0] / max(spent[False][0], 1)
    wall = spent[True][1] / max(spent[False][1], 1e-9)
    print(f"ratio review on / off: prompt tokens evaluated {tokens:.2f}, wall time {wall:.2f}")
    rows.append(
        {
            "what": "extract: the review's cost (absence, spans, second view), time on / off",
            "measured": f"{wall:.2f}×",
            "target": "reported",
            "met": None,
        }
    )
    return rows + args.trust.rows("extract", args.plots)


def first(v: Any) -> Any:
    return v[0] if isinstance(v, list) else v


def bench_slots(host: ModelHost, args: argparse.Namespace, dump: list[Any]) -> list[results.Row]:
    data = load("slots")
    cases = [c for c in data["cases"] if c["split"] == args.split]
    dev = [c for c in data["cases"] if c["split"] == "dev"]

    def job(case: dict[str, Any]) -> Callable[[], Outcome]:
        task = data["tasks"][case["task"]]
        examples = task["examples"]
        if args.shots == "similar":
            pool = [c for c in dev if c["task"] == case["task"]]
            examples = [
                {
                    "input": {"text": c["text"]},
                    "output": {"slots": {k: first(v) for k, v in c["expected"].items()}},
                }
                for c in similar(case["text"], pool)
            ]
        inputs = {"text": case["text"], "slots": task["slots"], "copy": True, "examples": examples}
        return lambda: run_task("fill_slots", inputs, model=host)

    host.reset_cache()
    outcomes, wall_s = run_all(host, [job(c) for c in cases], args.concurrency)
    fields = Fields()
    for case, outcome in zip(cases, outcomes, strict=True):
        for k, expected in case["expected"].items():
            fields.add(outcome.value["slots"][k], expected)
            keep(args, dump, "fill_slots", case, k, outcome.value["slots"][k], expected, outcome)
    print(f"fill_slots: {len(cases)} utterances in {wall_s:.1f} s")
    return fields.rows("fill_slots", "slots") + args.trust.rows("fill_slots", args.plots)


def keep(
    args: argparse.Namespace,
    dump: list[Any],
    kind: str,
    case: dict[str, Any],
    name: str,
    got: Any,
    expected: Any,
    outcome: Outcome,
) -> None:
    """One field's confidence for the trust rows, and its signals for the dump."""
    field = outcome.meta.get("fields", {}).get(name, {})
    right = same(got, expected)
    args.trust.add(kind, field.get("confidence"), right, field.get("accepted"))
    dump.append(
        {
            "kind": kind,
            "set": SET,
            "split": case["split"],
            "id": case["id"],
            "field": name,
            "value": got,
            "expected": expected,
            "right": right,
            "signals": field.get("signals"),
            "absence": outcome.meta.get("absence", {}).get(name),
        }
    )


def bench_classify(host: ModelHost, args: argparse.Namespace, dump: list[Any]) -> list[results.Row]:
    data = load("classify")
    cases = [c for c in data["cases"] if c["split"] == args.split]
    jobs = [
        (
            lambda c=c: run_task(
                "classify", {"text": c["text"], "labels": data["tasks"][c["task"]]}, model=host
            )
        )
        for c in cases
    ]
    host.reset_cache()
    outcomes, wall_s = run_all(host, jobs, args.concurrency)
    pairs = [
        (float(o.value["confidence"]), o.value["label"] == c["label"])
        for c, o in zip(cases, outcomes, strict=True)
    ]
    for (sure, ok), o in zip(pairs, outcomes, strict=True):
        args.trust.add("classify", sure, ok, o.accepted)
    for c, o in zip(cases, outcomes, strict=True):
        dump.append(
            {
                "kind": "classify",
                "set": SET,
                "split": c["split"],
                "id": c["id"],
                "raw": o.meta.get("raw_confidence", o.value["confidence"]),
                "right": o.value["label"] == c["label"],
            }
        )
    acc = sum(ok for _, ok in pairs) / len(pairs)
    ece = calibration.calibration_error([c for c, _ in pairs], [ok for _, ok in pairs])
    mean_conf = sum(c for c, _ in pairs) / len(pairs)
    print(
        f"classify: {sum(ok for _, ok in pairs)}/{len(pairs)} right ({acc:.1%}) in {wall_s:.1f} s;"
        f" mean confidence {mean_conf:.2f}, expected calibration error {ece:.3f}"
    )
    return [row("classify: accuracy", acc, None), *args.trust.rows("classify", args.plots)]


def bench_filter(host: ModelHost, args: argparse.Namespace, dump: list[Any]) -> list[results.Row]:
    data = load("filter")
    cases = [c for c in data["cases"] if c["split"] == args.split]
    jobs = [
        (
            lambda c=c: run_task(
                "filter", {"query": c["query"], "passages": c["passages"]}, model=host
            )
        )
        for c in cases
    ]
    host.reset_cache()
    outcomes, wall_s = run_all(host, jobs, args.concurrency)
    right = total = exact = empty_and_none = empties = nones = 0
    for case, outcome in zip(cases, outcomes, strict=True):
        kept = set(outcome.value["kept"])
        relevant = set(case["relevant"])
        for p in case["passages"]:
            right += (p in kept) == (p in relevant)
            total += 1
        exact += kept == relevant
        empties += not kept
        nones += not relevant
        empty_and_none += not kept and not relevant
    acc = right / total
    precision = empty_and_none / max(empties, 1)
    recall = empty_and_none / max(nones, 1)
    print(
        f"filter: {right}/{total} passages kept or dropped right ({acc:.1%}), {exact}/{len(cases)}"
        f" cases exact, in {wall_s:.1f} s; no relevant passage → nothing kept: precision"
        f" {precision:.1%} ({empty_and_none}/{empties}), recall {recall:.1%}"
        f" ({empty_and_none}/{nones})"
    )
    return [
        row("filter: passages kept or dropped right", acc, None),
        row("filter: cases exactly right", exact / len(cases), None),
        row("filter: nothing relevant → nothing kept, recall", recall, None),
        row("filter: nothing relevant → nothing kept, precision", precision, None),
    ]


BENCHES = {
    "extract": bench_extract,
    "fill_slots": bench_slots,
    "classify": bench_classify,
    "filter": bench_filter,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=["eval", "voice", "fit", "fresh"], default="eval")
    parser.add_argument("--split", choices=["dev", "test", "heldout"])
    parser.add_argument("--plots", type=Path, help="draw risk–coverage curves (PNG) here")
    parser.add_argument("--kinds", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--shots", choices=["fixed", "similar"], default="fixed")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--dump", type=Path, help="write every absence decision here (JSON)")
    args = parser.parse_args()
    global SET
    SET = args.set
    args.split = args.split or {"voice": "heldout", "fit": "dev", "fresh": "dev"}.get(SET, "test")
    args.trust = Trust()
    host = ModelHost(default_model_path(), n_ctx=2048, concurrency=args.concurrency)
    started = time.perf_counter()
    rows: list[results.Row] = []
    dump: list[Any] = []
    print(f"split: {args.split}, shots: {args.shots}, concurrency {args.concurrency}")
    for kind in args.kinds:
        rows += BENCHES[kind](host, args, dump)
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")
    host.close()
    if args.dump:
        args.dump.write_text(json.dumps(dump, indent=1, ensure_ascii=False))
    if args.shots == "fixed" and args.kinds == list(BENCHES) and args.split != "dev":
        results.record(
            "bench_kinds" if SET == "eval" else "bench_kinds_voice",
            real="the default GGUF model (gemma-3-270m Q4_K_M), batched; the kinds as a worker"
            " runs them, with the shipped calibration, on "
            + (
                "the test halves of benchmarks/data/eval_*.json"
                if SET == "eval"
                else "the held-out sets benchmarks/data/voice_*.json (another author, written"
                " before tuning)"
            ),
            simulated="nothing",
            rows=rows,
        )


if __name__ == "__main__":
    main()
