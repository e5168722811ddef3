"""`taskloom learn`: labelled answers in, a lesson per signature out, used by later runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from taskloom.lessons import Lesson
from tests.test_cli import cli

SCHEMA = {
    "type": "object",
    "properties": {
        "person": {"type": ["string", "null"], "description": "the name of the person writing"},
        "order_id": {"type": ["string", "null"], "description": "the order number, as written"},
    },
    "required": ["person", "order_id"],
}
PEOPLE = [
    "Maria Lopez",
    "Tom Becker",
    "Ines Duarte",
    "Kofi Mensah",
    "Lena Ford",
    "Omar Haddad",
    "Sara Kim",
    "Piet de Vries",
    "Ana Silva",
    "Raj Patel",
    "Eva Novak",
    "Luca Bruni",
]


def step(text: str) -> dict[str, object]:
    return {"kind": "extract", "inputs": {"text": text, "copy": True}, "output": SCHEMA}


def examples(tmp_path: Path, n: int) -> str:
    lines = []
    for i, person in enumerate(PEOPLE[:n]):
        order = f"A-{1040 + i}" if i % 3 else None
        about = f"my order {order} is late" if order else "where is my parcel"
        text = f"Hi, {person} here: {about}. Thanks"
        lines.append({"step": step(text), "expected": {"person": person, "order_id": order}})
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


def lessons(home: Path) -> list[Lesson]:
    found = sorted((home / "examples" / "learned").glob("*.json"))
    return [Lesson.model_validate_json(p.read_text()) for p in found]


def test_learn_writes_a_lesson_and_prints_before_and_after(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "learn", "--examples", examples(tmp_path, 10), "--model", "scripted"
    )
    assert code == 0, err
    [lesson] = lessons(taskloom_home)
    assert lesson.kind == "extract" and lesson.held_back == 5 and lesson.trained_on == 5
    assert set(lesson.before) == {"answers", "accuracy", "coverage"}
    assert lesson.signature in out and "→" in out and "held back" in out
    assert "later runs of these steps use them" in out


def test_learn_deletes_old_adapters_no_lesson_names(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLOOM_ADAPTERS_KEPT", "1")
    learned = taskloom_home / "examples" / "learned"
    learned.mkdir(parents=True)
    day_old = time.time() - 86_400
    for n in range(3):
        path = learned / f"adapter-extract-{n}.gguf"
        path.write_bytes(b"GGUF")
        os.utime(path, (day_old + n, day_old + n))
    code, out, err = cli(
        capsys, "learn", "--examples", examples(tmp_path, 10), "--model", "scripted"
    )
    assert code == 0, err
    assert "deleted 2 older adapter files no lesson names (TASKLOOM_ADAPTERS_KEPT=1" in out
    assert [p.name for p in learned.glob("*.gguf")] == ["adapter-extract-2.gguf"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--plan", "p.json"], "--plan and --step go together"),
        ([], "the example bank"),
    ],
)
def test_bad_learn_calls_exit_2_with_one_line(
    taskloom_home: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, _, err = cli(capsys, "learn", "--model", "scripted", *args)
    assert code == 2 and says in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_too_few_examples_to_hold_back_exit_2(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "learn", "--examples", examples(tmp_path, 6), "--model", "scripted")
    assert code == 2 and "too few examples to learn" in err and "the most any has is 6" in err
    assert len(err.strip().splitlines()) == 1
    assert lessons(taskloom_home) == []


def test_a_plan_step_missing_from_the_plan_exit_2(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "steps": [{"id": "a", **step("$input.text")}]}))
    code, _, err = cli(capsys, "learn", "--plan", str(plan), "--step", "b", "--model", "scripted")
    assert code == 2 and "has no step 'b': a" in err


@pytest.mark.model
def test_a_lesson_learned_on_the_real_model_is_used_by_a_later_run(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "learn", "--examples", examples(tmp_path, 12), "--choose", "fixed")
    assert code == 0, err
    [lesson] = lessons(taskloom_home)
    assert lesson.after["answers"] == lesson.before["answers"] > 0
    assert len(lesson.shown({"text": "x"})) == 3
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "steps": [{"id": "c", **step("$input.text")}]}))
    text = "Hi, Nora Berg here: my order A-2001 is late. Thanks"
    code, out, err = cli(
        capsys, "run", str(plan), "--input", json.dumps({"text": text}), "--inline", "--json"
    )
    assert code == 0, err
    [c] = json.loads(out)["steps"]
    assert c["meta"]["lesson"] == lesson.signature
    code, out, err = cli(
        capsys, "run", str(plan), "--input", json.dumps({"text": text}), "--inline", "--json",
        "--no-learned",
    )  # fmt: skip
    assert code == 0, err
    assert "lesson" not in json.loads(out)["steps"][0]["meta"]


def test_an_adapter_needs_the_local_gguf_model_exit_2(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")  # the learn extra
    code, _, err = cli(
        capsys, "learn", "--examples", examples(tmp_path, 10), "--model", "scripted", "--adapter"
    )
    assert code == 2 and "training an adapter needs the local GGUF model" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert lessons(taskloom_home) == []


def test_an_adapter_without_the_learn_extra_names_the_install(
    tmp_path: Path,
    taskloom_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import taskloom.adapters.train as train

    # as where none of the extra is installed (make newest's venv): torch is named first
    monkeypatch.setattr(train, "find_spec", lambda m: None)
    code, _, err = cli(
        capsys, "learn", "--examples", examples(tmp_path, 10), "--model", "scripted", "--adapter"
    )
    assert code == 2 and 'needs torch, which is not installed: pip install "taskloom[learn]"' in err
    assert len(err.strip().splitlines()) == 1
