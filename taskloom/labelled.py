"""Labelled examples: steps with their right outputs, run and graded answer by answer.

The file format (`taskloom calibrate --examples FILE.jsonl` and `taskloom eval`; the
learning command reads the same) is one JSON object a line:

    {"step": {"kind": "extract", "inputs": {"text": "...", "copy": true},
              "output": {"type": "object", "properties": {...}}},
     "expected": {"person": "Maria Lopez", "order_id": null}}

- `step` is a plan step whose inputs are literals (no `$` references); `id` is optional.
- `expected` is the step's right output, in its kind's output shape. `fill_slots` may
  give the slots alone, `classify` the label alone. A field's expected value may be a
  list of the answers that count as right. Strings are compared without regard to case
  or surrounding spaces.
- Graded: each field of `extract` and `fill_slots`; the label of `classify`; the kept
  passages of `filter` (as a set). `generate` has no right answer to compare with and is
  skipped.

Graded answers also fit calibrations: `recalibrate` (the base model's), and
`adapter_confidence` (an adapted model's, for `taskloom learn --adapter`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from taskloom.calibration import (
    Calibration,
    KindCalibration,
    can_refit,
    fit_kind,
    frontier,
    judged,
    signature,
)
from taskloom.chat import ChatModel
from taskloom.errors import InputError, TaskInputError, TaskloomError
from taskloom.plan import SLM_KINDS, Plan, Step, StepKind, did_you_mean, references, resolve
from taskloom.tools import Outcome, Usage, run_task
from taskloom.tools.confidence import FEATURES, Signals

GRADED = (StepKind.EXTRACT, StepKind.FILL_SLOTS, StepKind.CLASSIFY, StepKind.FILTER)


class Labelled(BaseModel):
    """One line of a labelled-examples file."""

    step: Step
    expected: Any
    line: int = 0
    slm: dict[str, Any] | None = None
    """A bank line's: what the small model had answered (`bank.slm_answer`)."""


@dataclass(frozen=True)
class Graded:
    """One answer of one example: its field (None for a whole step), confidence, rightness."""

    kind: str
    signature: str
    line: int
    field: str | None
    value: Any
    expected: Any
    confidence: float | None
    is_right: bool
    evidence: list[float] | float | None = None
    """What the kind's confidence was mapped from: a field's signal vector, or the kind's
    own confidence before calibration (to fit a calibration anew)."""


def read(path: str | Path, *, plan: Plan | None = None) -> list[Labelled]:
    """The examples of a JSONL file, every line checked.

    With a `plan` (`taskloom eval PLAN.json`), each line's `step` is the id of one of
    its steps instead of a step, `input` holds the run's inputs its `$input` references
    read, and `inputs` (optional) replaces some of the step's inputs, e.g. one that
    references another step's output:

        {"step": "intent", "input": {"email": "..."}, "expected": "refund"}

    Raises:
        InputError: naming the first bad line and what is wrong with it.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"can't read examples file {str(path)!r}: {e}") from e
    found = []
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{n}"
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not JSON ({e.msg}); one JSON object a line") from e
        if not isinstance(raw, dict) or "step" not in raw or "expected" not in raw:
            raise InputError(f'{where}: each line is {{"step": {{...}}, "expected": ...}}')
        step = raw["step"]
        if plan is not None:
            step = _plan_step(plan, raw, where)
        elif isinstance(step, str):
            raise InputError(f"{where}: step {step!r} names a plan step; pass the plan as TARGET")
        if isinstance(step, dict):
            step = {"id": "step", **step}
        try:
            slm = raw.get("slm") if isinstance(raw.get("slm"), dict) else None
            example = Labelled(step=step, expected=raw["expected"], line=n, slm=slm)
        except ValidationError as e:
            first = e.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{where}: {at}: {first['msg'].lower()}") from e
        if example.step.kind not in SLM_KINDS:
            kinds = ", ".join(sorted(SLM_KINDS))
            raise InputError(f"{where}: kind {example.step.kind!r} is not an SLM kind ({kinds})")
        if any(True for _ in references(example.step.inputs)):
            raise InputError(f"{where}: inputs must be literals, not $references")
        found.append(example)
    if not found:
        raise InputError(f"examples file {str(path)!r} has no examples")
    return found


def _plan_step(plan: Plan, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The plan step a line names, its inputs resolved against the line's `input`."""
    sid = raw["step"]
    ids = [s.id for s in plan.steps]
    if not isinstance(sid, str):
        raise InputError(f'{where}: with a plan, "step" is a step id ({", ".join(ids)})')
    if sid not in ids:
        near = did_you_mean(sid, ids)
        raise InputError(f"{where}: no step {sid!r} in the plan{near} (steps: {', '.join(ids)})")
    run_inputs, replaced = raw.get("input", {}), raw.get("inputs", {})
    if not isinstance(run_inputs, dict) or not isinstance(replaced, dict):
        raise InputError(f'{where}: "input" and "inputs" are JSON objects')
    step = plan.step(sid)
    try:
        inputs = resolve({**step.inputs, **replaced}, inputs=run_inputs, results={})
    except TaskInputError as e:
        raise InputError(
            f'{where}: {e.message}; give the run\'s inputs in "input", or the step\'s in "inputs"'
        ) from e
    return {**step.model_dump(exclude_none=True), "inputs": inputs}


def same(got: Any, expected: Any) -> bool:
    """Whether an answer counts as right (a list of expected answers: any of them)."""
    accepted = expected if isinstance(expected, list) else [expected]
    if got is None:
        return None in accepted
    if not isinstance(got, str):
        return got in accepted
    return got.strip().lower() in [a.strip().lower() for a in accepted if isinstance(a, str)]


def grade(example: Labelled, outcome: Outcome, sig: str) -> list[Graded]:
    """Each graded answer of one example's outcome (module doc)."""
    kind, expected, value = example.step.kind, example.expected, outcome.value
    fields = outcome.meta.get("fields", {})

    raw = outcome.meta.get("raw_confidence")

    def answer(name: str | None, got: Any, want: Any, confidence: float | None) -> Graded:
        evidence: list[float] | float | None = raw if isinstance(raw, float) else None
        if name is not None:
            said = fields.get(name, {}).get("signals")
            evidence = Signals.from_meta(said).vector() if isinstance(said, dict) else None
        right = _right(kind, got, want)
        return Graded(kind, sig, example.line, name, got, want, confidence, right, evidence)

    if kind in (StepKind.EXTRACT, StepKind.FILL_SLOTS):
        got_all = value.get("slots", value) if kind == StepKind.FILL_SLOTS else value
        want_all = expected.get("slots", expected) if isinstance(expected, dict) else {}
        return [
            answer(name, got_all.get(name), want, fields.get(name, {}).get("confidence"))
            for name, want in want_all.items()
        ]
    if kind == StepKind.CLASSIFY:
        want = expected.get("label") if isinstance(expected, dict) else expected
        return [answer(None, value.get("label"), want, outcome.confidence)]
    if kind == StepKind.FILTER:
        want = expected.get("kept") if isinstance(expected, dict) else expected
        return [answer(None, value.get("kept"), want, outcome.confidence)]
    return []


def graded_live(example: Labelled, cal: Calibration) -> list[Graded]:
    """The small model's answer banked beside a label (`example.slm`), graded against it,
    each answer's confidence under `cal`: live measurements of the step as written.

    None where the answer was not the step's as written (a lesson's examples or adapter
    ran: its measurements belong to that lesson), or was not `sampled`: judged by a
    threshold, only the answers it flagged escalated and were labelled (or, with flagged
    answers left to review, only those under `escalate_below`), and a threshold chosen
    on those alone would be biased. Sampled, every answer escalated, so the banked ones
    are a sample of the task's traffic as it comes.
    """
    slm = example.slm
    if not slm or slm.get("as_written") is not True or slm.get("sampled") is not True:
        return []
    graded = _graded_slm(example, slm)
    return [replace(g, confidence=confidence_of(cal, g.kind, g.evidence)) for g in graded]


def graded_audit(examples: Sequence[Labelled], lesson_at: float | None) -> list[Graded]:
    """The accepted answers drawn for the audit (`slm.audited`, `audit_share`) while the
    lesson written at `lesson_at` was in force (None: no lesson, the calibration's
    threshold), graded against the LLM's labels. Drawn at random from what was
    accepted, they measure the precision of accepted answers without bias."""
    return [
        g
        for example in examples
        if (slm := example.slm) and slm.get("audited") is True and slm.get("lesson_at") == lesson_at
        for g in _graded_slm(example, slm)
    ]


def _graded_slm(example: Labelled, slm: dict[str, Any]) -> list[Graded]:
    """A banked small-model answer graded against its line's label (`grade`)."""
    meta = {"fields": slm.get("fields") or {}, "raw_confidence": slm.get("raw_confidence")}
    outcome = Outcome(value=slm.get("value"), usage=Usage(), meta=meta)
    step = example.step
    try:
        return grade(example, outcome, signature(step.kind, step.inputs, step.output))
    except (AttributeError, TypeError):  # a value not in the kind's shape: nothing to grade
        return []


def recalibrate(
    base: Calibration,
    graded: Sequence[Graded],
    *,
    target: float,
    level: float,
    min_per_signature: int = 30,
) -> Calibration:
    """A calibration fitted to labelled answers: per kind (its mapping anew when there
    are enough answers, `calibration.fit_kind`) and per signature with at least
    `min_per_signature` answers (a threshold of its own)."""
    kinds = dict(base.kinds)
    signatures = dict(base.signatures)
    for kind in sorted({g.kind for g in graded}):
        mine = [g for g in graded if g.kind == kind and g.evidence is not None]
        if not mine:
            continue
        fitted, _ = fit_kind(
            kind,
            [g.evidence for g in mine],  # type: ignore[misc]
            [g.is_right for g in mine],
            [f"{g.signature}:{g.line}" for g in mine],
            base=base.kinds.get(kind),
            target=target,
            level=level,
        )
        kinds[kind] = fitted
        probe = base.model_copy(update={"kinds": kinds})
        for sig in sorted({g.signature for g in mine}):
            theirs = [g for g in mine if g.signature == sig]
            if len(theirs) < min_per_signature:
                continue
            conf = [confidence_of(probe, kind, g.evidence) for g in theirs]
            points = frontier(conf, [g.is_right for g in theirs], level=level)
            signatures[sig] = KindCalibration(
                **judged(points, len(theirs), target=target, level=level)
            )
    return Calibration(
        target_precision=target,
        level=level,
        about=f"taskloom calibrate on {len(graded)} labelled answers",
        kinds=kinds,
        signatures=signatures,
    )


def confidence_of(cal: Calibration, kind: str, evidence: list[float] | float | None) -> float:
    """An answer's confidence under `cal`, from what it was mapped from (0 if unmapped)."""
    if isinstance(evidence, list):
        return cal.field_confidence(kind, evidence) or 0.0
    return cal.step_confidence(kind, evidence) or 0.0


ADAPTER_SIGNALS = FEATURES[: FEATURES.index("rivalled")]
"""The signals an adapted model's own weights weigh: all but the rivals'. On a fresh
extraction split written to decide it, weights fitted with the rivals ranked an
adapter's answers worse (AURC 0.127 against 0.112) and chose a threshold that
accepted them at 91% precision, under the 95% target (docs/learning.md). The weights
are a prefix of `FEATURES`, so the calibration leaves the rivals unweighed."""


def adapter_confidence(
    kind: str, graded: Sequence[Graded], base: Calibration
) -> tuple[list[float] | None, Literal["own", "calibration"], list[Graded]]:
    """How an adapted model's answers to held-back examples are ranked: by weights of its
    own where they are enough to fit (`adapter_weights`, out of fold), else by `base`'s
    `adapted_weights` (fitted on other adapters' answers) where it has them, else as the
    review scored them. Returns the weights (None: the calibration's own), where they
    came from, and the answers with those confidences."""
    weights, scored = adapter_weights(kind, graded, base)
    if weights is not None:
        return weights, "own", scored
    fallback = base.of(kind).adapted_weights
    if fallback is None:
        return None, "own", list(graded)
    cal = Calibration(kinds={kind: KindCalibration(weights=fallback)})
    return (
        fallback,
        "calibration",
        [
            replace(g, confidence=confidence_of(cal, kind, g.evidence))
            if isinstance(g.evidence, list)
            else g
            for g in graded
        ],
    )


def adapter_weights(
    kind: str,
    graded: Sequence[Graded],
    base: Calibration,
    *,
    signals: Sequence[str] = ADAPTER_SIGNALS,
) -> tuple[list[float] | None, list[Graded]]:
    """An adapted model's own signal weights over `signals` (the first of `FEATURES`, by
    default `ADAPTER_SIGNALS`), fitted on its answers to examples it was not trained on,
    and those answers with out-of-fold confidences (5 folds by example,
    `calibration.fit_kind`), so that a threshold chosen on them is not chosen on the
    answers the weights were fitted to. (None, the answers as they were) when there are
    too few to fit (`calibration.can_refit`) or the kind has no signals.
    """
    if list(signals) != FEATURES[: len(signals)]:
        raise ValueError(f"weighed signals must be the first of FEATURES, not {signals}")
    fitted = [g for g in graded if isinstance(g.evidence, list)]
    right = [g.is_right for g in fitted]
    weighed = [g.evidence[: len(signals)] for g in fitted]  # type: ignore[index]
    if not fitted or not can_refit(right, len(weighed[0])):
        return None, list(graded)
    kc, oof = fit_kind(
        kind,
        weighed,
        right,
        [f"{g.signature}:{g.line}" for g in fitted],
        base=base.kinds.get(kind),
        target=base.target_precision,
        level=base.level,
    )
    scored = iter(oof)  # in the order of `fitted`: the answers with signals
    return kc.weights, [
        replace(g, confidence=next(scored)) if isinstance(g.evidence, list) else g for g in graded
    ]


def _right(kind: str, got: Any, want: Any) -> bool:
    if kind == StepKind.FILTER:
        return isinstance(got, list) and isinstance(want, list) and set(got) == set(want)
    return same(got, want)


def run(
    examples: Sequence[Labelled],
    *,
    model: ChatModel,
    calibration: Calibration,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Graded], list[str]]:
    """Run every example's step on `model` (concurrently: a batching host decodes them
    together) and grade the answers.

    Returns:
        The graded answers, and one line per example whose step failed to run.
    """

    def one(example: Labelled) -> list[Graded] | str:
        step = example.step
        try:
            outcome = run_task(
                step.kind, step.inputs, output=step.output, model=model, calibration=calibration
            )
        except TaskloomError as e:
            return f"line {example.line}: {e.message}"
        finally:
            if progress is not None:
                progress(1)
        return grade(example, outcome, signature(step.kind, step.inputs, step.output))

    graded: list[Graded] = []
    failed: list[str] = []
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        for got in pool.map(one, [e for e in examples if e.step.kind in GRADED]):
            if isinstance(got, str):
                failed.append(got)
            else:
                graded += got
    return graded, failed
