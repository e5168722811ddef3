"""The cascade that learns, end to end: stream the dev halves, learn, report on the test halves.

    python benchmarks/bench_learn.py                    # extract, fill_slots, classify
    python benchmarks/bench_learn.py --kinds extract --plots benchmarks/out
    python benchmarks/bench_learn.py --round 25 --adapter     # weights, extract
    python benchmarks/bench_learn.py --round 25 --adapter --kinds fill_slots
    python benchmarks/bench_learn.py --round 25 --adapter --precision 0.9

The stream: the dev halves of benchmarks/data/eval_{extract,slots,classify}.json,
interleaved and shuffled (seeded), run one by one through the cascade
(`EscalatingDispatcher` over the real model in-process). Each answer the calibration (or
its signature's lesson) does not accept escalates to the teacher, and the teacher's
answer goes into the example bank. After every `--round` steps, `taskloom learn`'s code
(`api.learn.learn`) learns every signature in the bank that has enough answers, and
later steps use the lessons. Each round reports the share of steps escalated (the
issue's measure) and the share of their fields, in all and by kind: a step is accepted
only when every field is, but the LLM answers only the flagged fields of `extract` and
`fill_slots` (a `classify` step counts as one field). The shuffle makes each round a
like mix of the signatures, as a deployed workflow's stream is: the eval sets list each
signature's cases in a block, so in file order most of a round's steps would be of
signatures no round before had learned.

Then, on the test halves (never streamed, never seen by the teacher) and on the
held-out voice sets, each step runs as the eval set writes it (with its hand-written
examples) and with the signature's final lesson (its examples after those), side by
side: accuracy (fields, slots, labels), coverage at 95% precision, and AURC.
Serving cost: the extraction test half at concurrency 16, with lessons and without,
steps/s (the lesson adds examples to the prompt; `fixed` ones stay a cached prefix).

Real: the default GGUF model (gemma-3-270m Q4_K_M) in a batching `ModelHost`, the
kinds, the review and confidence, the bank, `learn` (its held-back split, its choice
of examples, its thresholds), the escalating dispatcher. Simulated: the teacher. It
is the gold answers of the dev halves, standing in for the LLM (a perfect teacher;
a real LLM makes mistakes, which this does not measure). Learning is examples in
the prompt (the lesson); with `--adapter`, it is a LoRA adapter per kind trained on the
banked answers (`taskloom learn --adapter`: real training, on this machine's CPU), served
by the same host, and recorded as `bench_learn_adapter`. Runs of other kinds than the
default are recorded under their own names (`bench_learn_adapter_fill_slots`), and so
are runs at another target precision than the default 95% (`--precision 0.9`:
`bench_learn_adapter_at_90`; what is accepted and escalated, and each lesson's
threshold, are chosen at that target, as `taskloom run --precision` chooses them).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import results

from taskloom import calibration
from taskloom.adapters.train import Recipe
from taskloom.agents.budget import Budget
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.api.learn import banked as banked_examples
from taskloom.api.learn import learn
from taskloom.bank import ExampleBank, Source, slm_answer, step_signature
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.load import default_model_path
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.errors import InputError
from taskloom.labelled import Graded, Labelled, grade
from taskloom.lessons import Lessons, fields_of, judge, teach
from taskloom.plan import Step
from taskloom.step import StepJob, StepResult
from taskloom.tools import Outcome, run_task
from taskloom.tools.base import Usage
from taskloom.views.learning import runs_with

DATA = Path(__file__).parent / "data"
KINDS = {"extract": "extract", "fill_slots": "slots", "classify": "classify"}


LIMIT: int | None = None


def cases(kind: str, split: str, *, source: str = "eval") -> list[Labelled]:
    """The cases of `split` in `source`'s set of `kind` (`data/<source>_<kind>.json`: eval,
    voice, fit, fresh) as labelled steps, written as the eval set writes them."""
    data = json.loads((DATA / f"{source}_{KINDS[kind]}.json").read_text())
    found = []
    for n, c in enumerate(data["cases"]):
        if c["split"] != split:
            continue
        if kind == "extract":
            inputs = {"text": c["text"], "copy": True, "examples": data["examples"][c["schema"]]}
            step = Step(id="s", kind=kind, inputs=inputs, output=data["schemas"][c["schema"]])
            expected: Any = c["expected"]
        elif kind == "fill_slots":
            task = data["tasks"][c["task"]]
            inputs = {
                "text": c["text"],
                "slots": task["slots"],
                "copy": True,
                "examples": task["examples"],
            }
            step = Step(id="s", kind=kind, inputs=inputs)
            expected = {"slots": c["expected"]}
        else:
            inputs = {"text": c["text"], "labels": data["tasks"][c["task"]]}
            step = Step(id="s", kind=kind, inputs=inputs)
            expected = c["label"]
        found.append(Labelled(step=step, expected=expected, line=n))
    return found[:LIMIT]


class Teacher:
    """The LLM's stand-in: answers with the gold label of the step it is shown."""

    def __init__(self, labelled: Sequence[Labelled]) -> None:
        self.gold = {_key(e.step.inputs): e.expected for e in labelled}
        self.calls = 0

    def answer(self, job: StepJob) -> Any:
        self.calls += 1
        return self.gold[_key(job.inputs)]


def _key(inputs: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in inputs.items() if k != "examples"}, sort_keys=True)


def stream(
    host: ModelHost,
    settings: Settings,
    dev: list[Labelled],
    round_size: int,
    adapter: Recipe | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Run the dev stream through the cascade, learning after every round; per round,
    the share escalated and the accuracy of what the SLM answered."""
    teacher = Teacher(dev)
    bank = ExampleBank(settings.examples_path)
    dispatcher = EscalatingDispatcher(
        InlineDispatcher(model=host, settings=settings),
        llm=None,
        budget=Budget(),
        settings=settings,
    )
    store = Lessons(settings.examples_path / "learned")
    rounds: list[dict[str, Any]] = []
    learning_s = 0.0
    for start in range(0, len(dev), round_size):
        chunk = dev[start : start + round_size]
        jobs = [_job(e, i) for i, e in enumerate(chunk, start=start)]
        with ThreadPoolExecutor(settings.concurrency) as pool:
            got = list(pool.map(dispatcher.dispatch, jobs))
        escalated = right = 0
        by_kind: dict[str, list[int]] = {}  # kind: [flagged fields, fields]
        for example, job, result in zip(chunk, jobs, got, strict=True):
            right += _all_right(example, result)
            # the LLM answers only a step's flagged fields (a kind without fields: the step)
            fields = fields_of(result)
            counts = by_kind.setdefault(job.kind, [0, 0])
            counts[1] += len(fields) or 1
            counts[0] += (
                sum(not f.get("accepted") for f in fields.values())
                if fields
                else (result.accepted is not True)
            )
            if result.accepted is not True:  # flagged: the teacher answers, the bank keeps it
                escalated += 1
                lesson = store.of(job)
                # as the dispatcher banks an escalation: with the small model's answer
                said = slm_answer(result, as_written=lesson is None or lesson.as_written)
                bank.add(example.step, teacher.answer(job), source=Source.LLM, slm=said)
        lessons = len(store.all())
        flagged, answered = (sum(c[i] for c in by_kind.values()) for i in (0, 1))
        kinds = {kind: f / n for kind, (f, n) in sorted(by_kind.items())}
        rounds.append(
            {
                "round": len(rounds) + 1,
                "steps": len(chunk),
                "escalated": escalated / len(chunk),
                "fields_escalated": flagged / answered,
                "fields_escalated_by_kind": kinds,
                "slm_right": right / len(chunk),
                "lessons_in_use": lessons,
            }
        )
        print(
            f"round {len(rounds)}: {len(chunk)} steps, {escalated / len(chunk):.0%} escalated"
            f" ({flagged / answered:.0%} of their fields: "
            + ", ".join(f"{kind} {share:.0%}" for kind, share in kinds.items())
            + "),"
            f" SLM right {right / len(chunk):.0%}, {lessons} lessons in use"
        )
        started = time.perf_counter()
        try:
            found = learn(banked_examples(settings), settings=settings, model=host, adapter=adapter)
        except InputError as e:  # too few in every signature yet
            print(f"  learn: {str(e).splitlines()[0]}")
            found = []
        learning_s += time.perf_counter() - started
        for f in found:
            if f.lesson is not None:
                b, a = f.lesson.before, f.lesson.after
                print(
                    f"  learned {f.kind} {f.signature}: {f.examples} examples, held-back accuracy"
                    f" {b['accuracy']:.0%} → {a['accuracy']:.0%}"
                    f" ({runs_with(f.lesson)}),"
                    f" threshold {f.lesson.threshold}"
                    + (" (inherits its kind's)" if f.lesson.inherits else "")
                    + (f", also chosen on {f.lesson.live} live answers" if f.lesson.live else "")
                )
    return rounds, learning_s


def _job(example: Labelled, n: int) -> StepJob:
    step = example.step
    return StepJob(
        run_id="bench", step_id=f"s{n}", kind=step.kind, inputs=step.inputs, output=step.output
    )


def _all_right(example: Labelled, result: StepResult) -> bool:
    outcome = _outcome(result)
    graded = grade(example, outcome, "")
    return bool(graded) and all(g.is_right for g in graded)


def _outcome(result: StepResult) -> Outcome:
    return Outcome(
        value=result.value,
        usage=Usage(),
        meta=result.meta,
        confidence=result.confidence,
        accepted=result.accepted,
    )


def measure(
    host: ModelHost, settings: Settings, examples: list[Labelled], *, learned: bool
) -> tuple[list[Graded], float]:
    """Each example's answers graded, as written or with its signature's lesson; wall time."""
    store = Lessons(settings.examples_path / "learned")
    base = calibration.load(settings.calibration)

    def one(example: Labelled) -> list[Graded]:
        step = example.step
        job = _job(example, example.line)
        lesson = store.of(job) if learned else None
        if lesson is not None:
            job = teach(job, lesson, store.root)
        model = host.adapted(job.adapter) if job.adapter else host
        outcome = run_task(step.kind, job.inputs, output=step.output, model=model, calibration=base)
        if lesson is not None:
            result = StepResult(
                run_id="b", step_id="s", status="done", value=outcome.value,
                confidence=outcome.confidence, accepted=outcome.accepted, meta=outcome.meta,
            )  # fmt: skip
            judged = judge(result, lesson)
            outcome = _outcome(judged)
        return grade(example, outcome, step_signature(step))

    host.reset_cache()
    started = time.perf_counter()
    with ThreadPoolExecutor(settings.concurrency) as pool:
        graded = [g for got in pool.map(one, examples) for g in got]
    return graded, time.perf_counter() - started


def by_signature(before: Sequence[Graded], after: Sequence[Graded], store: Lessons) -> list[str]:
    """Each signature's share right before → after, and what its lesson runs with: where
    learning helped and where it hurt."""
    lines = []
    for sig in sorted({g.signature for g in before}):
        b = [g.is_right for g in before if g.signature == sig]
        a = [g.is_right for g in after if g.signature == sig]
        lesson = store.get(sig)
        way = "no lesson" if lesson is None else runs_with(lesson)
        lines.append(
            f"  {sig}: {sum(b) / len(b):.1%} → {sum(a) / len(a):.1%} of {len(b)} fields ({way})"
        )
    return lines


def minutes_for_200(seconds: float, load_seconds: float, examples: int) -> float:
    """A training run's time projected to the issue's 200 examples: the time grows with
    the examples, the model's load does not."""
    return (load_seconds + (seconds - load_seconds) * 200 / examples) / 60


def scores(graded: Sequence[Graded]) -> dict[str, float]:
    right = [g.is_right for g in graded]
    conf = [g.confidence or 0.0 for g in graded]
    return {
        "accuracy": sum(right) / max(len(right), 1),
        "coverage": calibration.coverage_at(conf, right),
        "aurc": calibration.aurc(conf, right),
    }


def draw(rounds: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["round"] for r in rounds]
    ax.plot(xs, [r["escalated"] for r in rounds], marker="o", label="steps escalated")
    ax.plot(xs, [r["fields_escalated"] for r in rounds], marker="^", label="fields escalated")
    ax.plot(xs, [r["slm_right"] for r in rounds], marker="s", label="SLM answer right")
    ax.set_xlabel("round (steps of the dev stream)")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(xs)
    ax.legend()
    ax.set_title("the cascade learning from its teacher")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", help="default: all three; with --adapter, extract")
    parser.add_argument("--round", type=int, default=50, help="steps between learning")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--plots", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--limit", type=int, help="cases per kind and split (a smoke run)")
    parser.add_argument("--adapter", action="store_true", help="learn LoRA adapters")
    parser.add_argument("--precision", type=float, help="the target precision (default 0.95)")
    args = parser.parse_args()
    default = "extract" if args.adapter else ",".join(KINDS)
    kinds = (args.kinds or default).split(",")
    # one record per mode and kinds, so a run of other kinds keeps the default's record
    name = "bench_learn_adapter" if args.adapter else "bench_learn"
    if args.kinds and args.kinds != default:
        name += "_" + "_".join(kinds)
    if args.precision is not None:
        name += f"_at_{round(args.precision * 100)}"
    global LIMIT
    LIMIT = args.limit

    host = ModelHost(default_model_path(), concurrency=16, n_ctx=2048)
    rows: list[results.Row] = []
    with TemporaryDirectory() as home:
        settings = Settings(
            home=Path(home),
            concurrency=args.concurrency,
            escalate_below=0.0,
            target_precision=args.precision,
        )
        dev = [e for pair in zip(*[cases(k, "dev") for k in kinds], strict=False) for e in pair]
        random.Random(0).shuffle(dev)
        recipe = Recipe() if args.adapter else None
        rounds, learning_s = stream(host, settings, dev, args.round, recipe)
        draw(rounds, args.plots / f"{name.replace('bench_', '')}_escalated.png")
        store = Lessons(settings.examples_path / "learned")
        lessons = store.all()
        print(f"learning: {len(lessons)} lessons, {learning_s:.0f} s in all")
        for kind in kinds:
            for label, examples in (
                ("test", cases(kind, "test")),
                ("voice", cases(kind, "heldout", source="voice")),
            ):
                before, _ = measure(host, settings, examples, learned=False)
                after, _ = measure(host, settings, examples, learned=True)
                b, a = scores(before), scores(after)
                print(
                    f"{kind} {label}: right {b['accuracy']:.1%} → {a['accuracy']:.1%}"
                    f" ({(a['accuracy'] - b['accuracy']) * 100:+.1f} points); coverage@95"
                    f" {b['coverage']:.1%} → {a['coverage']:.1%}; AURC {b['aurc']:.3f} →"
                    f" {a['aurc']:.3f}"
                )
                print("\n".join(by_signature(before, after, store)))
                gain = (a["accuracy"] - b["accuracy"]) * 100
                rows.append(
                    {
                        "what": f"{kind} ({label}): right after learning − before, points",
                        "measured": f"{gain:+.1f} ({b['accuracy']:.1%} → {a['accuracy']:.1%})",
                        "target": "≥ +15" if kind == "extract" else "reported",
                        "met": gain >= 15 if kind == "extract" else None,
                    }
                )
                rows.append(
                    {
                        "what": f"{kind} ({label}): coverage at 95% precision, before → after",
                        "measured": f"{b['coverage']:.1%} → {a['coverage']:.1%}",
                        "target": "≥ 1.5×",
                        "met": a["coverage"] >= 1.5 * b["coverage"] and a["coverage"] > 0,
                    }
                )
        if "extract" in kinds:
            tests = cases("extract", "test")
            fast = settings.model_copy(update={"concurrency": 16})
            _, plain_s = measure(host, fast, tests, learned=False)
            _, taught_s = measure(host, fast, tests, learned=True)
            _, plain2_s = measure(host, fast, tests, learned=False)
            _, taught2_s = measure(host, fast, tests, learned=True)
            ratio = (plain_s + plain2_s) / (taught_s + taught2_s)
            print(
                "serving, extract test half at concurrency 16: steps/s with lessons ÷ without"
                f" {ratio:.2f} ({len(tests) * 2 / (taught_s + taught2_s):.2f} vs"
                f" {len(tests) * 2 / (plain_s + plain2_s):.2f} steps/s)"
            )
            rows.append(
                {
                    "what": f"serving with {'adapters' if args.adapter else 'lessons'} ÷ without,"
                    " steps/s at concurrency 16",
                    "measured": f"{ratio:.2f}",
                    "target": "≥ 0.9",
                    "met": ratio >= 0.9,
                }
            )
        first, last = rounds[0]["escalated"], rounds[-1]["escalated"]
        rows.append(
            {
                "what": "escalated share, first round → last",
                "measured": f"{first:.0%} → {last:.0%}",
                "target": "falls",
                "met": last < first,
            }
        )
        first, last = rounds[0]["fields_escalated"], rounds[-1]["fields_escalated"]
        rows.append(
            {
                "what": "fields escalated (the LLM answers only a step's flagged fields),"
                " first round → last",
                "measured": f"{first:.0%} → {last:.0%}",
                "target": "reported",
                "met": None,
            }
        )
        trainings = [lesson.training for lesson in lessons if lesson.training]
        if trainings:  # the last round's training, scaled to the 200 examples
            t = max(trainings, key=lambda t: t["steps"])
            load = t.get("load_seconds", 0.0)
            at_200 = minutes_for_200(t["seconds"], load, t["examples"])
            print(
                f"adapter training: {t['examples']} examples, {t['steps']} steps in"
                f" {t['seconds']:.0f} s ({t['device']}; the model's load {load:.0f} s);"
                f" 200 examples × {Recipe().epochs} passes ≈ {at_200:.1f} min"
            )
            rows.append(
                {
                    "what": "adapter training, 200 examples, 2 cores (projected from the"
                    " last round's: the model's load once, the rest scaled)",
                    "measured": f"{at_200:.1f} min",
                    "target": "≤ 10 min",
                    "met": at_200 <= 10,
                }
            )
        rows.append(
            {
                "what": "learning time, all rounds (2 cores)",
                "measured": f"{learning_s:.0f} s",
                "target": "reported",
                "met": None,
            }
        )
    if LIMIT is not None:
        return  # a smoke run's numbers are not results
    results.record(
        name,
        real="default GGUF model, kinds, review, bank, learn, lessons, escalating dispatcher"
        + ("; LoRA training on the CPU and the adapters served" if args.adapter else ""),
        simulated="the teacher (the dev halves' gold answers stand in for the LLM)",
        rows=rows,
    )


if __name__ == "__main__":
    main()
