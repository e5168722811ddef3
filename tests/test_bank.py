"""The example bank: labelled answers kept per signature, ranked by who gave them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskloom.bank import ExampleBank, Source, step_signature
from taskloom.labelled import read
from taskloom.plan import Step

SCHEMA = {"type": "object", "properties": {"order_id": {"type": ["string", "null"]}}}


def extract(text: str, **inputs: Any) -> Step:
    return Step(id="contact", kind="extract", inputs={"text": text, **inputs}, output=SCHEMA)


def test_steps_of_one_task_share_a_signature_whatever_their_text() -> None:
    assert step_signature(extract("order A-1")) == step_signature(extract("order B-2"))
    assert step_signature(extract("x", instructions="ids only")) != step_signature(extract("x"))


def test_a_banked_example_reads_back_as_a_labelled_example(tmp_path: Path) -> None:
    bank = ExampleBank(tmp_path)
    sig = bank.add(extract("order A-1"), {"order_id": "A-1"}, source=Source.LLM, run_id="r1")
    [example] = bank.examples(sig)
    assert example.step.inputs["text"] == "order A-1"
    assert example.expected == {"order_id": "A-1"}
    # The file is a labelled-examples file as `taskloom calibrate` reads one.
    assert [e.expected for e in read(bank.path(sig))] == [{"order_id": "A-1"}]
    assert bank.signatures() == {sig: 1}


def test_a_person_outranks_an_llm_on_the_same_data_and_the_latest_wins_among_equals(
    tmp_path: Path,
) -> None:
    bank = ExampleBank(tmp_path)
    step = extract("order A-1, or was it A-7?")
    bank.add(step, {"order_id": "A-1"}, source=Source.PERSON)
    sig = bank.add(step, {"order_id": "A-7"}, source=Source.LLM)
    bank.add(extract("order C-3"), {"order_id": "C-3"}, source=Source.LLM)
    bank.add(extract("order C-3"), {"order_id": "C-4"}, source=Source.LLM)
    got = {e.step.inputs["text"]: e.expected["order_id"] for e in bank.examples(sig)}
    assert got == {"order A-1, or was it A-7?": "A-1", "order C-3": "C-4"}
    assert bank.signatures() == {sig: 4}


def test_an_empty_bank_has_nothing(tmp_path: Path) -> None:
    bank = ExampleBank(tmp_path / "none")
    assert bank.examples("0" * 16) == []
    assert bank.signatures() == {}
