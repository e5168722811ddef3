"""`taskloom learn` as a library call: labelled answers in, one lesson a signature out.

For each step signature among the examples (a file may hold several), the answers are
split, by a hash of their data, into those the lesson learns from and a held-back part
(`hold_back`, at least `MIN_HELD_BACK`). On the held-back part, the step runs as
written (before) and with the lesson's examples (after, its own examples and then the
lesson's, for each way of choosing them unless one is given); the better way is kept,
ties to `fixed` (it keeps the prompt's prefix cached), and none at all when neither
beats the step as written. An adapter's lessons get the adapted model's own signal
weights, fitted on the held-back answers of the adapter's kind, pooled, or where those
are too few the calibration's `adapted_weights` (`labelled.adapter_confidence`). The
lesson's threshold is chosen on the same held-back answers (`calibration.frontier`;
an adapter's on its kind's, pooled, out of fold where weights were fitted on them; where
the step stays as written, on the small model's banked answers to the learned-from part
too, `labelled.graded_live`). Where they are too few to choose one, a lesson on the
calibration's confidences inherits the calibration's threshold for its kind, unless they
show its precision there below the target (`Lesson.inherits`). Before/after accuracy
and coverage at the target precision are kept in the lesson and printed. The accepted
answers audited under the lesson each signature had (`labelled.graded_audit`) are
counted for the table too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from taskloom import calibration, labelled
from taskloom.adapters.file import write_lora
from taskloom.adapters.train import Recipe, check_extra
from taskloom.adapters.train import train as train_lora
from taskloom.bank import ExampleBank, step_signature
from taskloom.calibration import (
    Calibration,
    coverage_at,
    frontier,
    judged,
)
from taskloom.chat import ChatModel, load_model
from taskloom.config import Settings
from taskloom.errors import ConfigError, InputError
from taskloom.labelled import Labelled
from taskloom.lessons import (
    Choose,
    Learned,
    Lesson,
    Lessons,
    as_example,
    fixed_examples,
    training_pairs,
)
from taskloom.tools import KINDS
from taskloom.workflows.target import read_plan

if TYPE_CHECKING:
    from taskloom.chat.llama.host import ModelHost

log = structlog.get_logger(__name__)

MIN_HELD_BACK = 5
"""Held-back answers below which a signature is not learned: nothing would measure it."""
SHOTS = 3


def learn(
    examples: Sequence[Labelled],
    *,
    settings: Settings,
    model: ChatModel | None = None,
    shots: int = SHOTS,
    choose: Choose | None = None,
    hold_back: float = 0.3,
    adapter: Recipe | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Learned]:
    """Learn a lesson for each signature among `examples`, and save it (module doc).

    Args:
        model: the small model to measure with (default: the settings' local model).
        choose: how the lesson's examples are chosen; None measures both and keeps the
            better on the held-back answers.
        adapter: train a LoRA adapter per kind with this recipe, on the learned-from
            part of every signature of that kind, and measure it instead of examples.
        progress: told each time a held-back step has run or a training step is done.

    Raises:
        InputError: no signature has enough examples to hold some back.
        MissingExtraError: `adapter` without the `learn` extra.
        ConfigError: `adapter` with a model that is not a local GGUF model.
    """
    check_enough(examples, shots=shots)
    if adapter is not None:
        check_extra()
    groups = by_signature(examples)
    needed = MIN_HELD_BACK + shots
    base = calibration.load(settings.calibration, target=settings.target_precision)
    model = model if model is not None else load_model(settings)
    store = Lessons(settings.examples_path / "learned")
    learnable = {sig: g for sig, g in groups.items() if len(g) >= needed}
    adapters = (
        train_adapters(learnable, model, store.root, adapter, hold_back, progress)
        if adapter is not None
        else {}
    )
    trials = {}
    for sig, group in learnable.items():
        trials[sig] = _trial(
            sig, group, model=model, base=base, settings=settings, shots=shots,
            choose=choose, hold_back=hold_back, progress=progress,
            adapter=adapters.get(group[0].step.kind),
        )  # fmt: skip
    _weigh_adapters(list(trials.values()), base)
    found = []
    for sig, group in groups.items():
        kind = group[0].step.kind
        audited = _audited(group, store, sig)
        if sig not in trials:
            skipped = f"{len(group)} examples, needs {needed}"
            found.append(Learned(sig, kind, len(group), skipped=skipped, audited=audited))
            continue
        lesson = _finished(trials[sig], base)
        store.save(lesson)
        found.append(Learned(sig, kind, len(group), lesson=lesson, audited=audited))
    return found


def _audited(group: Sequence[Labelled], store: Lessons, sig: str) -> tuple[int, int] | None:
    """(right, answers) of the accepted answers audited under the signature's lesson in
    force, or None when none were."""
    try:
        current = store.get(sig)
    except ConfigError:  # unreadable: it is about to be replaced
        return None
    graded = labelled.graded_audit(group, current.at if current is not None else None)
    return (sum(g.is_right for g in graded), len(graded)) if graded else None


def prune_adapters(settings: Settings) -> list[Path]:
    """Delete the adapter files no lesson names, but the newest `adapters_kept` and any
    written in the last hour (`Lessons.prune`); the files deleted."""
    return Lessons(settings.examples_path / "learned").prune(settings.adapters_kept)


def by_signature(examples: Sequence[Labelled]) -> dict[str, list[Labelled]]:
    groups: dict[str, list[Labelled]] = {}
    for example in examples:
        groups.setdefault(step_signature(example.step), []).append(example)
    return groups


def check_enough(examples: Sequence[Labelled], *, shots: int = SHOTS) -> None:
    """Raise InputError unless some signature has enough examples to hold some back."""
    needed = MIN_HELD_BACK + shots
    most = max((len(group) for group in by_signature(examples).values()), default=0)
    if most < needed:
        raise InputError(
            f"too few examples to learn: a signature needs at least {needed} "
            f"({shots} to show, {MIN_HELD_BACK} held back to measure); the most any has is "
            f"{most}; add labelled examples"
        )


def planned_runs(
    examples: Sequence[Labelled],
    *,
    shots: int = SHOTS,
    choose: Choose | None = None,
    hold_back: float = 0.3,
    adapter: Recipe | None = None,
) -> int:
    """How many held-back steps `learn` will run, and training steps it will take (for a
    progress bar)."""
    learnable = [g for g in by_signature(examples).values() if len(g) >= MIN_HELD_BACK + shots]

    def passes(kind: str) -> int:  # before, then each way measured
        if adapter is not None:  # the adapter, and it trusting its nulls where it can
            return 2 + ("absence" in KINDS[kind].Inputs.model_fields)
        return 2 if choose else 3

    runs = sum(passes(g[0].step.kind) * len(split(g, hold_back)[1]) for g in learnable)
    if adapter is not None:
        runs += adapter.epochs * sum(len(split(group, hold_back)[0]) for group in learnable)
    return runs


def train_adapters(
    groups: dict[str, list[Labelled]],
    model: ChatModel,
    root: Path,
    recipe: Recipe,
    hold_back: float,
    progress: Callable[[int], None] | None,
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """One adapter per kind, trained on the learned-from part of each of its signatures
    (the held-back part stays unseen, to measure it); by kind, its file and how training
    went."""
    host = trainable_host(model)
    by_kind: dict[str, list[str]] = {}
    for sig, group in groups.items():
        by_kind.setdefault(group[0].step.kind, []).append(sig)
    found = {}
    for kind, sigs in by_kind.items():
        train = [e for sig in sigs for e in split(groups[sig], hold_back)[0]]
        tick = (lambda done, total: progress(1)) if progress is not None else None
        trained = train_lora(training_pairs(train, host), model_path=host.path, recipe=recipe,
                             progress=tick)  # fmt: skip
        path = write_lora(
            trained.weights,
            root / f"adapter-{kind}.gguf",
            alpha=trained.alpha,
            arch=trained.arch,
            meta={"base_model": host.path.name, "kind": kind, "signatures": " ".join(sigs)},
            content_named=True,  # retrained weights get a new name, so workers load them
        )
        training = {
            "examples": len(train), "steps": trained.steps,
            "seconds": round(trained.seconds, 1),
            "load_seconds": round(trained.load_seconds, 1), "device": trained.device,
            "first_loss": trained.first_loss, "last_loss": trained.last_loss,
        }  # fmt: skip
        log.info("adapter_trained", kind=kind, path=str(path), **training)
        found[kind] = (path, training)
    return found


def chosen_examples(
    settings: Settings,
    *,
    examples_path: str | None = None,
    plan_path: str | None = None,
    step_id: str | None = None,
) -> list[Labelled]:
    """The examples `taskloom learn` learns from: a labelled file's, the bank's answers
    to one plan step's task, or the whole bank's.

    Raises:
        InputError: the arguments don't go together, the step is not in the plan, or
            there is nothing to learn from.
    """
    if (plan_path is None) != (step_id is None):
        raise InputError("--plan and --step go together: the plan file and its step's id")
    if examples_path and plan_path:
        raise InputError("give --examples FILE, or --plan and --step (the bank's), not both")
    if examples_path:
        return labelled.read(examples_path)
    sig = None
    if plan_path is not None:
        plan = read_plan(Path(plan_path), max_steps=settings.max_steps)
        steps = {s.id: s for s in plan.steps}
        if step_id not in steps:
            raise InputError(f"plan {plan_path} has no step {step_id!r}: {', '.join(steps)}")
        sig = step_signature(steps[step_id])
    return banked(settings, sig)


def banked(settings: Settings, sig: str | None = None) -> list[Labelled]:
    """The example bank's answers: of one signature, or of all."""
    bank = ExampleBank(settings.examples_path)
    sigs = [sig] if sig is not None else list(bank.signatures())
    found = [example for s in sigs for example in bank.examples(s)]
    if not found:
        where = f"signature {sig}" if sig else "any signature"
        raise InputError(
            f"the example bank ({bank.root}) has no examples of {where}; escalations and"
            " reviews fill it, or pass --examples FILE.jsonl"
        )
    return found


def split(group: Sequence[Labelled], hold_back: float) -> tuple[list[Labelled], list[Labelled]]:
    """(learn from, held back): a stable split by a hash of each example's data."""

    def key(example: Labelled) -> str:
        data = json.dumps(example.step.inputs, sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()

    ordered = sorted(group, key=key)
    n_held = max(MIN_HELD_BACK, round(len(ordered) * hold_back))
    return ordered[n_held:], ordered[:n_held]


def _trial(
    sig: str,
    group: Sequence[Labelled],
    *,
    model: ChatModel,
    base: Calibration,
    settings: Settings,
    shots: int,
    choose: Choose | None,
    hold_back: float,
    progress: Callable[[int], None] | None,
    adapter: tuple[Path, dict[str, Any]] | None = None,
) -> _Trial:
    """The signature's best lesson on its held-back answers, before a threshold is chosen."""
    train, held = split(group, hold_back)
    pool = [as_example(e) for e in train]
    candidates: list[Choose] = [choose] if choose else ["fixed", "nearest"]

    def measure(lesson: Lesson | None) -> list[labelled.Graded]:
        steps = held if lesson is None else [_taught(e, lesson) for e in held]
        adapted = lesson is not None and lesson.adapter is not None
        graded, _ = labelled.run(
            steps,
            model=trainable_host(model).adapted(adapter[0]) if adapted and adapter else model,
            calibration=base,
            concurrency=settings.concurrency,
            progress=progress,
        )
        return graded

    before = measure(None)
    best: tuple[Lesson, list[labelled.Graded]] | None = None
    if adapter is not None:  # measured alone: the adapter learned what examples would show
        trial = Lesson(signature=sig, kind=group[0].step.kind, method="adapter",
                       adapter=adapter[0].name, examples=[], shots=shots,
                       training=adapter[1])  # fmt: skip
        best = (trial, measure(trial))
        if "absence" in KINDS[trial.kind].Inputs.model_fields:  # extract, fill_slots
            # the adapter learned when a field is absent; the runtime's check may undo that
            trusting = trial.model_copy(update={"trust_nulls": True})
            graded = measure(trusting)
            if _accuracy(graded) > _accuracy(best[1]):
                best = (trusting, graded)
        candidates = []
    for way in candidates:
        examples = fixed_examples(pool, shots) + pool if way == "fixed" else pool
        trial = Lesson(
            signature=sig, kind=group[0].step.kind, examples=_unique(examples),
            choose=way, shots=shots,
        )  # fmt: skip
        graded = measure(trial)
        if best is None or _accuracy(graded) > _accuracy(best[1]):
            best = (trial, graded)
    assert best is not None
    lesson, after = best
    if _accuracy(after) <= _accuracy(before):  # it did not help: the step as written
        as_written: dict[str, Any] = {
            "examples": [], "adapter": None, "method": "examples", "trust_nulls": False
        }  # fmt: skip
        lesson, after = lesson.model_copy(update=as_written), before
        # the small model's own answers to the rest, banked when they escalated, grade
        # the step as written too: its threshold is chosen on them all
        live = [g for e in train for g in labelled.graded_live(e, base)]
        return _Trial(lesson, len(train), len(held), before, after, live=live)
    return _Trial(lesson, len(train), len(held), before, after)


@dataclass
class _Trial:
    """A signature's lesson as measured on its held-back answers (`before` as written)."""

    lesson: Lesson
    trained_on: int
    held_back: int
    before: list[labelled.Graded]
    after: list[labelled.Graded]
    judged_on: list[labelled.Graded] | None = None
    """The answers its threshold is chosen on, where not `after`: its adapter's, pooled."""
    live: list[labelled.Graded] = field(default_factory=list)
    """As written: the learned-from answers' banked small-model answers, graded
    (`labelled.graded_live`); its threshold is chosen on them and `after`."""


def _weigh_adapters(trials: Sequence[_Trial], base: Calibration) -> None:
    """Pool the held-back answers of each kind's adapter lessons (one adapter, and one
    confidence, serve the kind): their threshold is chosen on them all, and where they
    are enough, the adapted model's own signal weights are fitted on them and they are
    rescored out of fold, or else ranked by the calibration's adapted weights
    (`labelled.adapter_confidence`)."""
    by_kind: dict[str, list[_Trial]] = {}
    for t in trials:
        if t.lesson.adapter is not None:
            by_kind.setdefault(t.lesson.kind, []).append(t)
    for kind, mine in by_kind.items():
        answers = [g for t in mine for g in t.after]
        weights, weights_from, pooled = labelled.adapter_confidence(kind, answers, base)
        rest = pooled
        for t in mine:
            t.after, rest = rest[: len(t.after)], rest[len(t.after) :]
            t.judged_on = pooled
            if weights is not None:
                update = {"weights": weights, "weights_from": weights_from}
                t.lesson = t.lesson.model_copy(update=update)


def _finished(trial: _Trial, base: Calibration) -> Lesson:
    """The lesson with its threshold, chosen on its held-back answers (or its adapter's),
    and its scores."""
    after, judged_on = trial.after, trial.judged_on or trial.after + trial.live
    points = frontier(
        [g.confidence or 0.0 for g in judged_on], [g.is_right for g in judged_on], level=base.level
    )
    found = judged(points, len(judged_on), target=base.target_precision, level=base.level)
    lesson = trial.lesson
    on_its_scale = lesson.adapter is None and lesson.weights is None
    inherits = found["threshold"] is None and on_its_scale and _consistent(judged_on, base, lesson)
    return lesson.model_copy(
        update={
            "threshold": found["threshold"],
            "inherits": inherits,
            "target_precision": base.target_precision,
            "frontier": points,
            "judged_on": len(judged_on),
            "trained_on": trial.trained_on,
            "held_back": trial.held_back,
            "live": len({g.line for g in trial.live}),
            "before": _scores(trial.before, base.target_precision),
            "after": _scores(after, base.target_precision),
            "at": time.time(),
        }
    )


def _consistent(answers: Sequence[labelled.Graded], base: Calibration, lesson: Lesson) -> bool:
    """Whether a signature's answers leave the calibration's threshold for its kind
    standing: there is one, and the precision of the answers it accepts is not shown to
    be below the target (their Clopper–Pearson upper bound reaches it; none accepted
    shows nothing)."""
    threshold = base.threshold(lesson.kind, lesson.signature)
    if threshold is None:
        return False
    accepted = [g.is_right for g in answers if (g.confidence or 0.0) >= threshold]
    n, k = len(accepted), sum(accepted)
    upper = 1 - calibration.lower_bound(n - k, n, level=base.level) if n else 1.0
    return upper >= base.target_precision


def adapter_training(settings: Settings) -> tuple[Recipe, ModelHost]:
    """The recipe and the model an adapter trains on, checked before anything runs.

    Raises:
        MissingExtraError: the `learn` extra is not installed.
        ConfigError: the settings' model is not a local GGUF model.
    """
    check_extra()
    return Recipe(), trainable_host(load_model(settings))


def trainable_host(model: ChatModel) -> ModelHost:
    """The model, if it is a local GGUF model that adapters can be trained on and applied to.

    Raises:
        ConfigError: it is not.
    """
    from taskloom.chat.llama.host import ModelHost

    if not isinstance(model, ModelHost):
        raise ConfigError(
            f"training an adapter needs the local GGUF model, not {model.name};"
            " set TASKLOOM_MODEL or --model to a GGUF file"
        )
    return model


def _taught(example: Labelled, lesson: Lesson) -> Labelled:
    step = example.step.model_copy(update={"inputs": lesson.taught(example.step.inputs)})
    return example.model_copy(update={"step": step})


def _unique(examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    found = []
    for ex in examples:
        key = json.dumps(ex, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            found.append(ex)
    return found


def _accuracy(graded: Sequence[labelled.Graded]) -> float:
    return sum(g.is_right for g in graded) / max(len(graded), 1)


def _scores(graded: Sequence[labelled.Graded], target: float) -> dict[str, float]:
    confidences = [g.confidence or 0.0 for g in graded]
    return {
        "answers": float(len(graded)),
        "accuracy": round(_accuracy(graded), 4),
        "coverage": round(coverage_at(confidences, [g.is_right for g in graded], target=target), 4),
    }
