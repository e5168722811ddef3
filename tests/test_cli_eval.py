"""`taskloom eval`: accuracy per step and field on labelled examples, the calibrate file
format and runner; with a plan as TARGET, the examples name its steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import cli
from tests.test_cli_calibrate import EXTRACT as CALIBRATE_EXTRACT

TRIAGE = str(Path(__file__).parent.parent / "examples" / "triage.json")
EMAIL = "Where is my parcel? Maria, order A-1042"
CLASSIFY = {"kind": "classify", "inputs": {"text": "my parcel is late", "labels": ["a", "b"]}}
EXTRACT = {**CALIBRATE_EXTRACT, "id": "contact"}


def jsonl(tmp_path: Path, *lines: Any) -> str:
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def test_eval_reports_accuracy_per_step_and_field_with_a_confusion_table(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the scripted model scores every label alike (so picks the first) and fills strings
    # with "": "a" is right, "b" is not, and neither extracted field is
    path = jsonl(
        tmp_path,
        {"step": CLASSIFY, "expected": "a"},
        {"step": CLASSIFY, "expected": {"label": "b"}},
        {"step": CLASSIFY, "expected": "b"},
        {"step": EXTRACT, "expected": {"name": "Maria", "order_id": "A-1042"}},
        {"step": {"kind": "generate", "inputs": {"instruction": "hi"}}, "expected": "x"},
    )
    code, out, err = cli(capsys, "eval", "--examples", path, "--model", "scripted", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["examples"], report["not_graded"]) == (5, 1)
    assert (report["answers"], report["right"]) == (5, 1)
    classify, contact = report["steps"]
    assert classify["step"] == "classify" and classify["accuracy"] == pytest.approx(1 / 3, 1e-3)
    assert classify["fields"] == [{"field": "label", "answers": 3, "right": 1, "accuracy": 0.3333}]
    assert classify["confusion"] == {"a": {"a": 1}, "b": {"a": 2}}
    assert contact["step"] == "contact" and [f["field"] for f in contact["fields"]] == [
        "name",
        "order_id",
    ]
    code, text, _ = cli(capsys, "eval", "--examples", path, "--model", "scripted")
    assert code == 0
    assert "5 examples, 5 answers graded, 1 right (20.0%)" in text
    assert "contact (extract): 0/2 right" in text and "expected \\ predicted" in text


def test_eval_of_a_plan_runs_the_step_each_example_names(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(
        tmp_path,
        {"step": "intent", "input": {"email": EMAIL}, "expected": "refund"},
        {"step": "intent", "input": {"email": EMAIL}, "expected": "shipping"},
        {"step": "docs", "input": {"kb": ["x", "y"]}, "inputs": {"query": "q"}, "expected": []},
    )
    code, out, err = cli(
        capsys, "eval", TRIAGE, "--examples", path, "--model", "scripted", "--json"
    )
    assert code == 0, err
    steps = {s["step"]: s for s in json.loads(out)["steps"]}
    assert steps["intent"]["confusion"] == {"refund": {"refund": 1}, "shipping": {"refund": 1}}
    assert steps["docs"]["kind"] == "filter" and steps["docs"]["answers"] == 1


@pytest.mark.parametrize(
    ("target", "lines", "says"),
    [
        (None, None, "can't read examples file"),
        ("flow.py:main", [{"step": CLASSIFY, "expected": "a"}], "eval takes a plan file (*.json)"),
        ("missing.json", [{"step": "intent", "expected": "a"}], "can't read plan"),
        (TRIAGE, [{"step": "intnt", "expected": "a"}], "no step 'intnt' in the plan (did you mean"),
        (TRIAGE, [{"step": CLASSIFY, "expected": "a"}], 'with a plan, "step" is a step id'),
        (None, [{"step": "intent", "expected": "a"}], "pass the plan as TARGET"),
        (TRIAGE, [{"step": "intent", "input": {}, "expected": "a"}], 'run\'s inputs in "input"'),
        (
            TRIAGE,
            [{"step": "docs", "input": {"kb": ["x"]}, "expected": []}],
            "'intent' has no result",
        ),
        (TRIAGE, [{"step": "intent", "input": [], "expected": "a"}], "are JSON objects"),
        (
            None,
            [{"step": {"kind": "generate", "inputs": {"instruction": "x"}}, "expected": "x"}],
            "no example could be graded",
        ),
    ],
)
def test_bad_eval_input_exits_2_with_one_line(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    target: str | None,
    lines: list[Any] | None,
    says: str,
) -> None:
    path = jsonl(tmp_path, *lines) if lines is not None else str(tmp_path / "none.jsonl")
    args = ["eval", *([] if target is None else [target]), "--examples", path]
    code, _, err = cli(capsys, *args, "--model", "scripted")
    assert code == 2, err
    errors = [line for line in err.strip().splitlines() if line.startswith("taskloom:")]
    assert len(errors) == 1 and says in errors[0], err
    assert "Traceback" not in err


def test_an_invalid_plan_target_exits_2_with_its_problems(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "steps": [{"id": "a", "kind": "classfy"}]}))
    path = jsonl(tmp_path, {"step": "a", "expected": "x"})
    code, _, err = cli(capsys, "eval", str(plan), "--examples", path, "--model", "scripted")
    assert code == 2
    assert "unknown kind 'classfy' (did you mean 'classify'?)" in err


@pytest.mark.model
@pytest.mark.timeout(600)
def test_eval_on_the_real_model(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = ["refund", "shipping"]
    texts = {
        "I want my money back for the broken kettle": "refund",
        "Please refund my order, it arrived damaged": "refund",
        "My parcel has not arrived yet, where is it?": "shipping",
        "When will my package be delivered?": "shipping",
    }
    path = jsonl(
        tmp_path,
        *(
            {"step": {"kind": "classify", "inputs": {"text": t, "labels": labels}}, "expected": e}
            for t, e in texts.items()
        ),
        {"step": EXTRACT, "expected": {"name": "Maria", "order_id": "A-1042"}},
    )
    code, out, err = cli(capsys, "eval", "--examples", path, "--json")
    assert code == 0, err
    report = json.loads(out)
    classify = next(s for s in report["steps"] if s["kind"] == "classify")
    confusion = classify["confusion"]
    assert set(confusion) == set(labels)
    assert {got for row in confusion.values() for got in row} <= set(labels)
    assert sum(n for row in confusion.values() for n in row.values()) == 4
    diagonal = sum(row.get(want, 0) for want, row in confusion.items())
    assert classify["right"] == diagonal
    assert report["answers"] == 4 + 2 and report["failed"] == []
