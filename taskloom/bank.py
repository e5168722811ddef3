"""The example bank: labelled answers kept per step signature, for learning and calibration.

Every answer a small model could not be trusted with, and someone better gave, is a
labelled example of that step's task:

- an escalation's accepted LLM answer (`source: "llm"`);
- a reviewer's approved or edited value (`source: "person"`);
- a user's labelled-examples file (`source: "file"`, `taskloom learn --examples`).

The bank keeps them as one JSONL file per signature (`calibration.signature`: kind,
output schema and the task-defining inputs, not the data) under `TASKLOOM_EXAMPLES`, by
default `TASKLOOM_HOME/examples/`. Point every box at one shared folder to pool them.
Each line is a labelled example (`labelled.py`'s format, so `taskloom calibrate` and
`taskloom learn` read a bank file as they read any other) plus where it came from:

    {"step": {"id": "contact", "kind": "extract", "inputs": {...}, "output": {...}},
     "expected": {"name": "Maria Lopez", "order_id": "A-1042"},
     "source": "llm", "at": 1764849600.0, "run_id": "r-…", "step_id": "contact"}

An escalation's line also keeps what the small model had answered (`slm`): its value,
each field's signals (or the kind's raw confidence), whether it ran the step as written,
the threshold it was judged by (None: none, every answer flagged), and whether it was
`sampled` (escalated whatever its confidence). Graded against the line's label, these
are live measurements of the small model on the task's own traffic
(`labelled.graded_live`).

Lines are only ever appended. When several answers label the same data (the same
inputs), the highest-ranked source wins, a person over a file over an LLM, and among
equals the latest.
"""

from __future__ import annotations

import fcntl
import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from taskloom.calibration import signature
from taskloom.labelled import Labelled, read
from taskloom.plan import Step
from taskloom.step import StepResult

log = structlog.get_logger(__name__)


class Source(StrEnum):
    """Who gave a labelled answer."""

    LLM = "llm"
    FILE = "file"
    PERSON = "person"


RANK = {Source.LLM: 0, Source.FILE: 1, Source.PERSON: 2}
"""A person's label outranks a user's file, which outranks an LLM's answer."""


def step_signature(step: Step) -> str:
    """The signature a step's examples are kept under."""
    return signature(step.kind, step.inputs, step.output)


class ExampleBank:
    """The labelled examples of every step signature, one JSONL file each (module doc)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sig: str) -> Path:
        return self.root / f"{sig}.jsonl"

    def add(
        self,
        step: Step,
        expected: Any,
        *,
        source: Source,
        run_id: str | None = None,
        step_id: str | None = None,
        slm: dict[str, Any] | None = None,
    ) -> str:
        """Append one labelled answer of a step whose inputs are literals; its signature.
        `slm`: what the small model had answered (`slm_answer`)."""
        sig = step_signature(step)
        line = {
            "step": step.model_dump(exclude_none=True, exclude_defaults=True),
            "expected": expected,
            "source": str(source),
            "at": time.time(),
            "run_id": run_id,
            "step_id": step_id or step.id,
        }
        if slm is not None:
            line["slm"] = slm
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
        self.root.mkdir(parents=True, exist_ok=True)
        with self.path(sig).open("ab") as f:
            # One locked write a line: appends from several workers never interleave.
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write(data)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        log.debug("example_banked", signature=sig, kind=step.kind, source=str(source))
        return sig

    def examples(self, sig: str) -> list[Labelled]:
        """The signature's examples, one per distinct data, oldest first (module doc)."""
        path = self.path(sig)
        if not path.exists():
            return []
        ranked: dict[str, tuple[tuple[int, float], Labelled]] = {}
        for example, meta in zip(read(path), _meta(path), strict=True):
            key = json.dumps(example.step.inputs, sort_keys=True, default=str)
            order = (RANK.get(Source(meta.get("source", "file")), 1), float(meta.get("at", 0)))
            if key not in ranked or order >= ranked[key][0]:
                ranked[key] = (order, example)
        return [example for _, example in sorted(ranked.values(), key=lambda kv: kv[0][1])]

    def signatures(self) -> dict[str, int]:
        """Each banked signature and how many lines it holds."""
        if not self.root.is_dir():
            return {}
        return {
            p.stem: sum(1 for line in p.open(encoding="utf-8") if line.strip())
            for p in sorted(self.root.glob("*.jsonl"))
        }


def slm_answer(
    result: StepResult,
    *,
    as_written: bool,
    flagged_escalate: bool = True,
    audited: bool = False,
    lesson_at: float | None = None,
) -> dict[str, Any]:
    """What the small model answered, to bank beside the label a better tier gave (module
    doc): the value, what its confidence is computed from, and how it was judged.

    `sampled`: the step escalated whatever its confidence: no threshold judged it (so it
    was flagged) and flagged answers escalate (`flagged_escalate`). Only then are the
    banked answers a fair sample of the task's traffic (`labelled.graded_live`).
    `audited`: an accepted answer drawn for the audit (`audit_share`), under the lesson
    written at `lesson_at` (None: no lesson).
    """
    judged = "threshold" in result.meta  # a result judged before it was recorded: unknown
    threshold = result.meta.get("threshold")
    answer: dict[str, Any] = {
        "value": result.value,
        "as_written": as_written,
        "threshold": threshold,
        "sampled": flagged_escalate and judged and threshold is None,
    }
    if audited:
        answer["audited"] = True
        answer["lesson_at"] = lesson_at
    fields = result.meta.get("fields")
    if isinstance(fields, dict) and fields:
        answer["fields"] = {
            name: {"signals": f["signals"]}
            for name, f in fields.items()
            if isinstance(f, dict) and isinstance(f.get("signals"), dict)
        }
    elif isinstance(result.meta.get("raw_confidence"), float):
        answer["raw_confidence"] = result.meta["raw_confidence"]
    return answer


def _meta(path: Path) -> list[dict[str, Any]]:
    """Each non-blank line's provenance keys, in `read`'s order."""
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        if text.strip():
            raw = json.loads(text)
            found.append({k: raw.get(k) for k in ("source", "at") if raw.get(k) is not None})
    return found
