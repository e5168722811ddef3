"""Labelled examples: the JSONL format, grading, and a calibration fitted from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskloom import labelled
from taskloom.calibration import Calibration, KindCalibration
from taskloom.errors import InputError
from taskloom.tools import Outcome, Usage


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    return path


EXTRACT = {
    "kind": "extract",
    "inputs": {"text": "Hi, Maria here, order A-1042"},
    "output": {"type": "object", "properties": {"name": {"type": "string"}}},
}


def test_a_good_file_reads_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", {"step": EXTRACT, "expected": {"name": "Maria"}}, "")
    [example] = labelled.read(path)
    assert example.line == 1 and example.step.id == "step" and example.step.kind == "extract"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "x.jsonl:1: not JSON"),
        ('{"step": {}}', 'each line is {"step"'),
        ({"step": {"kind": "tool", "inputs": {}}, "expected": 1}, "not an SLM kind"),
        ({"step": {**EXTRACT, "inputs": {"text": "$input.email"}}, "expected": {}}, "literals"),
        ({"step": {**EXTRACT, "colour": 1}, "expected": {}}, "colour: extra inputs"),
    ],
)
def test_each_bad_line_is_named_with_what_is_wrong(tmp_path: Path, line: object, says: str) -> None:
    path = write(tmp_path / "x.jsonl", line)
    with pytest.raises(InputError, match=says.replace("{", r"\{").replace("(", r"\(")):
        labelled.read(path)


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no examples"):
        labelled.read(write(tmp_path / "e.jsonl", ""))
    with pytest.raises(InputError, match="can't read"):
        labelled.read(tmp_path / "missing.jsonl")


def test_grading_compares_per_field_and_accepts_alternatives() -> None:
    example = labelled.Labelled(
        step={**EXTRACT, "id": "s"},
        expected={"name": ["Maria", "Maria Lopez"], "order_id": None},
        line=3,
    )
    outcome = Outcome(
        value={"name": "maria lopez ", "order_id": "A-1042"},
        usage=Usage(),
        meta={"fields": {"name": {"confidence": 0.9}, "order_id": {"confidence": 0.4}}},
    )
    graded = labelled.grade(example, outcome, "sig")
    assert [(g.field, g.is_right, g.confidence) for g in graded] == [
        ("name", True, 0.9),
        ("order_id", False, 0.4),
    ]


def test_recalibrate_sets_thresholds_per_kind_and_signature() -> None:
    graded = [
        labelled.Graded("classify", "s1", i, None, "x", "x", None, i != 0, 0.99) for i in range(100)
    ] + [
        labelled.Graded("classify", "s1", 100 + i, None, "x", "y", None, False, 0.3)
        for i in range(20)
    ]
    base = Calibration(kinds={"classify": KindCalibration(scale=(1.0, 0.0))})
    fitted = labelled.recalibrate(base, graded, target=0.95, level=0.9)
    assert fitted.kinds["classify"].threshold is not None
    assert fitted.kinds["classify"].examples == 120
    assert "s1" in fitted.signatures
    assert fitted.is_accepted("classify", fitted.step_confidence("classify", 0.99), "s1")
    assert not fitted.is_accepted("classify", fitted.step_confidence("classify", 0.3), "s1")


def test_a_kind_without_a_threshold_says_which_precision_it_can_reach() -> None:
    """`taskloom calibrate` on answers that never reach 95% says the highest target its
    frontier reaches, and what --precision at it accepts; recalibrating keeps the
    frontier for the signature too."""
    from taskloom.views.calibration import calibration_table

    graded = [
        labelled.Graded("classify", "s1", i, None, "x", "x", None, i % 10 != 0, 0.9 - i / 1000)
        for i in range(100)
    ]
    base = Calibration(kinds={"classify": KindCalibration(scale=(1.0, 0.0))})
    fitted = labelled.recalibrate(base, graded, target=0.95, level=0.9)
    kind = fitted.kinds["classify"]
    assert kind.threshold is None and fitted.signatures["s1"].frontier
    highest = kind.highest_target(0.9)
    assert highest is not None and 0.8 < highest < 0.95
    assert kind.at(highest, was=0.95, level=0.9).threshold is not None
    assert kind.at(highest + 0.01, was=0.95, level=0.9).threshold is None
    text = calibration_table(fitted, graded, target=0.95, level=0.9)
    assert f"at most {highest:.0%} is reachable: --precision {highest} accepts" in text
