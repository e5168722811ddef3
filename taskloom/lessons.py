"""Lessons: what a step signature learned from its labelled answers, used by later runs.

`taskloom learn` writes one lesson a signature, `<examples>/learned/<signature>.json`
next to the example bank (`TASKLOOM_EXAMPLES`; a folder every box can read). A run's
SLM steps use the lesson of their signature automatically (`learned=False`, or
`--no-learned`, turns that off):

- `examples`: few-shot examples taken from the labelled answers, shown after the step's
  own; empty when, on the held-back answers, they did not beat the step as written.
  `choose: "fixed"` shows the same ones to every input, so the prompt's prefix
  (instruction, schema, examples) stays one cached prefix; `"nearest"` shows the ones
  whose data is nearest the input's (word overlap), which costs that prefix.
- `adapter`: a LoRA adapter GGUF in the same folder (`taskloom learn --adapter`),
  trained on the labelled answers of its kind; the step's job names it and the worker
  applies it (`StepJob.adapter`). None when, on the held-back answers, it did not beat
  the step as written. `trust_nulls`: the adapter's steps run with `absence: false`
  (the model's own nulls stand) where that was right more often on those answers.
- `weights`: with an adapter, the adapted model's own signal weights (`tools/confidence.py`),
  fitted on the held-back answers of its kind: the shipped calibration ranks the base
  model's signals, and an adapted model's signals mean something else. Each field's
  confidence is recomputed from its signals with them. None: the calibration's (too few
  held-back answers to fit).
- `threshold`: the confidence at and above which the signature's answers are accepted,
  chosen on held-back answers (`calibration.frontier`); it replaces the
  calibration's for this signature. None: every answer stays flagged, unless the lesson
  `inherits`: its confidences are the calibration's (no adapter, no weights of its own)
  and its answers, too few to choose a threshold, do not contradict the calibration's
  (the Clopper–Pearson upper bound on the precision of those it accepts reaches the
  target), so it is judged by that one, as a step without a lesson is. A lesson that
  runs its steps as written also chooses it on the small model's own answers to the
  learned-from part, banked when they escalated (`live`, `labelled.graded_live`).
  A judged result's `meta.threshold` is the threshold it was judged by. With its
  `frontier` (`calibration.frontier`), a run that asks another precision
  (`target_precision`) judges by the threshold for that one (`Lesson.judging_at`).

Each `learn` writes its adapters under new names; `Lessons.prune` deletes the old ones
no lesson names (`taskloom learn` keeps the newest `adapters_kept`).

`training_pairs` turns labelled answers into an adapter's training pairs.

A lesson is applied on the coordinator, before a step is dispatched and after its
result comes back, so workers need nothing but the step.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from taskloom.adapters.train import Pair
from taskloom.calibration import (
    DATA_INPUTS,
    TARGET_PRECISION,
    Calibration,
    KindCalibration,
    judge_at,
    signature,
)
from taskloom.errors import ConfigError
from taskloom.labelled import Labelled
from taskloom.plan import SLM_KINDS, StepKind
from taskloom.step import StepJob, StepResult
from taskloom.tools import KINDS
from taskloom.tools.base import build_messages, parse_inputs
from taskloom.tools.confidence import Signals

if TYPE_CHECKING:
    from taskloom.chat.llama.host import ModelHost

Choose = Literal["fixed", "nearest"]

PRUNE_GRACE_S = 3600.0
"""An adapter file younger than this is never pruned, whatever names it."""


class Lesson(BaseModel):
    """What one step signature learned (module doc)."""

    signature: str
    kind: str
    method: Literal["examples", "adapter"] = "examples"
    examples: list[dict[str, Any]] = Field(
        description="few-shot examples, each {input: the data inputs, output: the answer}"
    )
    adapter: str | None = Field(
        None, description="the LoRA adapter file, in the lessons' folder, its steps run with"
    )
    trust_nulls: bool = Field(
        False,
        description="with an adapter: the model's nulls stand (the step's `absence: false`)",
    )
    weights: list[float] | None = Field(
        None, description="with an adapter: its signal weights, replacing the calibration's"
    )
    weights_from: Literal["own", "calibration"] = Field(
        "own",
        description="fitted on the adapter's own held-back answers, or the calibration's "
        "`adapted_weights` where those were too few",
    )
    choose: Choose = "fixed"
    shots: int = Field(3, ge=1, description="examples shown to each input")
    threshold: float | None = Field(None, description="accept at or above; None: flag all")
    inherits: bool = Field(
        False,
        description="its own answers were too few to choose a threshold and did not "
        "contradict the calibration's for its kind: it is judged by that one (`judged_by`)",
    )
    target_precision: float = Field(
        TARGET_PRECISION, description="the precision its threshold was chosen for"
    )
    frontier: list[tuple[float, int, int]] | None = Field(
        None,
        description="the answers its threshold was chosen on, as `calibration.frontier`"
        " (threshold, accepted, right); None: a lesson from before frontiers",
    )
    judged_on: int = Field(0, description="how many answers that frontier is of")
    trained_on: int = Field(0, description="labelled answers the examples came from")
    held_back: int = Field(0, description="labelled answers kept back to measure")
    before: dict[str, float] = Field(default_factory=dict, description="held-back scores")
    after: dict[str, float] = Field(default_factory=dict, description="held-back scores")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="for an adapter: examples, steps, seconds, device, first/last loss",
    )
    live: int = Field(
        0,
        description="as written: the learned-from answers whose banked small-model answer "
        "(graded live) its threshold was also chosen on",
    )
    at: float = 0.0

    def judging_at(self, target: float | None, level: float) -> Lesson:
        """The lesson judging at another target precision (None: its own), its
        threshold chosen again on its frontier (`KindCalibration.at`)."""
        if target is None or target == self.target_precision:
            return self
        kept = KindCalibration(
            threshold=self.threshold, frontier=self.frontier, examples=self.judged_on
        )
        moved = kept.at(target, was=self.target_precision, level=level)
        return self.model_copy(update={"threshold": moved.threshold, "target_precision": target})

    def judged_by(self, calibration: Calibration | None) -> float | None:
        """The threshold its answers are judged by: its own, or where it has none and
        inherits, the calibration's for its kind (as a step without a lesson is)."""
        if self.threshold is None and self.inherits and calibration is not None:
            return calibration.threshold(self.kind, self.signature)
        return self.threshold

    @property
    def as_written(self) -> bool:
        """Whether its steps run as written: it sets their threshold, nothing else."""
        return not self.examples and self.adapter is None and not self.trust_nulls

    def taught(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A step's inputs as the lesson runs it: its examples shown, its nulls trusted."""
        taught = dict(inputs)
        if self.examples:
            taught["examples"] = self.shown(inputs)
        if self.trust_nulls:
            taught["absence"] = False
        return taught

    def shown(self, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The examples this input's prompt shows: the step's own, then the lesson's."""
        own = list(inputs.get("examples") or [])
        if self.choose == "fixed":
            return own + self.examples[: self.shots]
        mine = words(data_of(inputs))
        ranked = sorted(self.examples, key=lambda ex: -overlap(mine, words(ex["input"])))
        return own + ranked[: self.shots]


@dataclass(frozen=True)
class Learned:
    """One signature's outcome: its lesson, or why it was not learned."""

    signature: str
    kind: str
    examples: int
    lesson: Lesson | None = None
    skipped: str | None = None
    audited: tuple[int, int] | None = None
    """Of the accepted answers audited under the lesson this one replaces (or the
    calibration, where there was none): (right, answers)."""


class Lessons:
    """The lessons under one folder, read when their file changes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[float, Lesson | None]] = {}

    def path(self, sig: str) -> Path:
        return self.root / f"{sig}.json"

    def get(self, sig: str) -> Lesson | None:
        """The signature's lesson, or None.

        Raises:
            ConfigError: the lesson's file is not a lesson.
        """
        path = self.path(sig)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        cached = self._cache.get(sig)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            lesson = Lesson.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as e:
            why = str(e).splitlines()[0]
            raise ConfigError(
                f"lesson {path} is unreadable ({why}); run taskloom learn again"
            ) from e
        self._cache[sig] = (mtime, lesson)
        return lesson

    def save(self, lesson: Lesson) -> Path:
        path = self.path(lesson.signature)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(lesson.model_dump_json(indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)  # a worker reading it never sees half a file
        return path

    def all(self) -> list[Lesson]:
        return [
            lesson
            for p in sorted(self.root.glob("*.json"))
            if (lesson := self.get(p.stem)) is not None
        ]

    def prune(self, keep: int, *, now: float | None = None) -> list[Path]:
        """Delete the adapter files no lesson names, but the newest `keep` of them and any
        written in the last `PRUNE_GRACE_S` (a step queued before the last `learn`, or one
        on another box still writing its lessons, may name it); the files deleted."""
        named = {lesson.adapter for lesson in self.all() if lesson.adapter}
        now = time.time() if now is None else now
        unnamed = []
        for path in self.root.glob("adapter-*.gguf"):
            try:
                if path.name not in named:
                    unnamed.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # another box's learn pruned it just now
                continue
        unnamed.sort(reverse=True)
        deleted = []
        for mtime, path in unnamed[keep:]:
            if now - mtime >= PRUNE_GRACE_S:
                path.unlink(missing_ok=True)
                deleted.append(path)
        return deleted

    def of(self, job: StepJob) -> Lesson | None:
        """The lesson of a job's signature, for SLM steps."""
        if job.kind not in SLM_KINDS:
            return None
        return self.get(signature(job.kind, job.inputs, job.output))


def teach(job: StepJob, lesson: Lesson, root: Path) -> StepJob:
    """The job with the lesson's examples in its prompt and its adapter named; `root`:
    the lessons' folder (an adapter's file is kept beside its lessons)."""
    update: dict[str, Any] = {}
    inputs = lesson.taught(job.inputs)
    if inputs != job.inputs:
        update["inputs"] = inputs
    if lesson.adapter:
        update["adapter"] = str(root / lesson.adapter)
    return job.model_copy(update=update) if update else job


def judge(result: StepResult, lesson: Lesson, calibration: Calibration | None = None) -> StepResult:
    """The result with its fields' confidences under the lesson's weights (if it has
    them), and its answers accepted or flagged by the lesson's threshold (or, where it
    inherits, by `calibration`'s: `Lesson.judged_by`)."""
    if result.accepted is None:  # failed, or a kind without a confidence
        return result
    judged = judge_at(rescored(result, lesson), lesson.judged_by(calibration))
    return judged.model_copy(update={"meta": {**judged.meta, "lesson": lesson.signature}})


def rescored(result: StepResult, lesson: Lesson) -> StepResult:
    """Each field's confidence recomputed from its signals with the lesson's weights, and
    the step's, their least (as the review sets it); the result as it was without them."""
    fields = fields_of(result)
    if lesson.weights is None or not fields:
        return result
    weights = Calibration(kinds={lesson.kind: KindCalibration(weights=lesson.weights)})
    found = {}
    for name, f in fields.items():
        said = f.get("signals")
        sure = None
        if isinstance(said, dict):
            sure = weights.field_confidence(lesson.kind, Signals.from_meta(said).vector())
        found[name] = {**f, "confidence": None if sure is None else round(sure, 4)}
    known = [f["confidence"] for f in found.values() if f["confidence"] is not None]
    step = min(known) if len(known) == len(found) else result.confidence
    meta = {**result.meta, "fields": found}
    return result.model_copy(update={"confidence": step, "meta": meta})


def fields_of(result: StepResult) -> dict[str, dict[str, Any]]:
    """A result's per-field answers (`meta.fields`), or none."""
    fields = result.meta.get("fields")
    return fields if isinstance(fields, dict) else {}


# --- examples from labelled answers -----------------------------------------------------


def data_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """A step's data inputs: what differs from one run of the task to the next."""
    return {k: v for k, v in inputs.items() if k in DATA_INPUTS - {"examples", "max_tokens"}}


def as_example(labelled: Labelled) -> dict[str, Any]:
    """A labelled answer as a few-shot example in its kind's output shape."""
    kind, expected = labelled.step.kind, labelled.expected
    output = _first_answers(expected)
    if kind == StepKind.CLASSIFY and not isinstance(output, dict):
        output = {"label": output}
    return {"input": data_of(labelled.step.inputs), "output": output}


def _first_answers(expected: Any) -> Any:
    """Where an expected value lists the answers that count, the first one."""
    if isinstance(expected, dict):
        return {k: _first_answers(v) for k, v in expected.items()}
    if isinstance(expected, list) and expected and not isinstance(expected[0], dict | list):
        return expected[0]
    return expected


def fixed_examples(examples: Sequence[dict[str, Any]], shots: int) -> list[dict[str, Any]]:
    """`shots` examples that between them show the most kinds of answer, shortest first.

    An answer's kinds: each field present or null (extract, fill_slots), or its label
    (classify). Greedy cover, ties to the shorter input: short examples keep the
    prompt cheap, and varied ones show the model both a value and a null for a field.
    """
    pool = sorted(examples, key=lambda ex: len(json.dumps(ex["input"])))
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    while pool and len(chosen) < shots:
        best = max(pool, key=lambda ex: len(_answer_kinds(ex["output"]) - seen))
        chosen.append(best)
        seen |= _answer_kinds(best["output"])
        pool.remove(best)
    return chosen


def _answer_kinds(output: Any) -> set[str]:
    if isinstance(output, dict):
        inner = output.get("slots", output) if isinstance(output.get("slots"), dict) else output
        if set(inner) == {"label"}:
            return {f"label={inner['label']}"}
        return {f"{k}={'null' if v is None else 'value'}" for k, v in inner.items()}
    return {f"label={output}"}


def words(value: Any) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", json.dumps(value, ensure_ascii=False).lower()))


def overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def training_pairs(examples: Sequence[Labelled], host: ModelHost) -> list[Pair]:
    """Labelled answers as training pairs for an adapter (`adapters.train`).

    The prompt is built exactly as the step builds it when it runs (the kind's
    instruction, schema and examples, then the data, through the model's chat template),
    so the adapter learns on the tokens it will be served; the answer is the labelled
    output as the kind writes it in examples (`kind.answer`, `json.dumps`), the form the
    model answers in.
    """
    found = []
    for example in examples:
        step = example.step
        kind = KINDS[step.kind]
        inputs = parse_inputs(kind, step.kind, step.inputs)
        messages = build_messages(kind, inputs, kind.schema(inputs, step.output))
        answer = json.dumps(kind.answer(as_example(example)["output"]), ensure_ascii=False)
        found.append(Pair(host.prompt_tokens(messages), host.tokenize(answer)))
    return found
