"""`taskloom eval` as a library call: labelled steps in, accuracy per step and field out.

It reads the same JSONL as `taskloom calibrate` and runs it through the same runner
(`calibrate.run_examples`); only the report differs (docs/evaluation.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskloom import labelled
from taskloom.api.calibrate import run_examples
from taskloom.config import Settings
from taskloom.errors import InputError
from taskloom.plan import StepKind
from taskloom.workflows.target import read_plan


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` graded: the examples, each graded answer, and the lines that failed."""

    examples: list[labelled.Labelled]
    graded: list[labelled.Graded]
    failed: list[str]

    def summary(self) -> dict[str, Any]:
        """Accuracy overall, per step and per field, and a confusion table per `classify`
        step (`{expected: {predicted: count}}`), as JSON-ready data. `not_graded` counts
        the examples of a kind with no right answer to compare with (`generate`)."""
        names = {e.line: _step_name(e) for e in self.examples}
        steps: dict[str, list[labelled.Graded]] = {}
        for g in self.graded:
            steps.setdefault(names[g.line], []).append(g)
        ungraded = sum(e.step.kind not in labelled.GRADED for e in self.examples)
        return {
            "examples": len(self.examples),
            "not_graded": ungraded,
            **_score(self.graded),
            "steps": [_step_summary(name, mine) for name, mine in steps.items()],
            "failed": self.failed,
        }


def read_examples(path: str | Path, *, target: str | None = None) -> list[labelled.Labelled]:
    """The labelled examples of a JSONL file; with a plan file as `target`, lines name
    its steps (`labelled.read`).

    Raises:
        InputError: the target is not a plan file, or a line is bad (naming it).
        TargetError, PlanValidationError: the plan can't be read, or is not valid.
    """
    if target is None:
        return labelled.read(path)
    if not target.endswith(".json"):
        raise InputError(
            f"eval takes a plan file (*.json) as TARGET, not {target!r};"
            " for a Python workflow, give each example its step (docs/evaluation.md)"
        )
    return labelled.read(path, plan=read_plan(Path(target), max_steps=10**6))


def evaluate(
    examples: list[labelled.Labelled],
    *,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Run every labelled step on the local model and grade its answers.

    Raises:
        InputError: nothing could be graded.
        ModelFileError, MissingExtraError: the model can't be loaded.
    """
    graded, failed = run_examples(examples, settings=settings, progress=progress)
    return Evaluation(examples=examples, graded=graded, failed=failed)


def _step_name(example: labelled.Labelled) -> str:
    """A step's id when the line gave one (`read` names the rest "step"), else its kind."""
    return example.step.id if example.step.id != "step" else example.step.kind


def _score(graded: list[labelled.Graded]) -> dict[str, Any]:
    right = sum(g.is_right for g in graded)
    accuracy = round(right / len(graded), 4) if graded else None
    return {"answers": len(graded), "right": right, "accuracy": accuracy}


def _step_summary(name: str, graded: list[labelled.Graded]) -> dict[str, Any]:
    kind = graded[0].kind
    fields: dict[str, list[labelled.Graded]] = {}
    for g in graded:
        fields.setdefault(g.field or _WHOLE.get(kind, kind), []).append(g)
    out = {"step": name, "kind": kind, **_score(graded)}
    out["fields"] = [{"field": f, **_score(mine)} for f, mine in fields.items()]
    if kind == StepKind.CLASSIFY:
        out["confusion"] = _confusion(graded)
    return out


_WHOLE: dict[str, str] = {StepKind.CLASSIFY: "label", StepKind.FILTER: "kept"}


def _confusion(graded: list[labelled.Graded]) -> dict[str, dict[str, int]]:
    """Counts of (expected, predicted) labels; an expected list counts as its first."""
    pairs = Counter(
        (str(g.expected[0] if isinstance(g.expected, list) else g.expected), str(g.value))
        for g in graded
    )
    table: dict[str, dict[str, int]] = {}
    for (want, got), n in sorted(pairs.items()):
        table.setdefault(want, {})[got] = n
    return table
