"""Direct plans: the kind chosen for what the goal asks, parameters written by the SLM.

The SLM here is the shipped scripted fake (the logic does not depend on the model);
`test_goal_model.py` runs the same plans on the real default model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from taskloom.agents import DirectPlanner, direct_plan
from taskloom.agents.direct import choose_kind, pick_input
from taskloom.chat import Message, ScriptedChatModel
from taskloom.chat.base import COPY_KEYWORD
from taskloom.plan import load_plan

NOTE = "Met Priya Raman at the harbour on 3 May; she now lives in Porto."
PASSAGES = ["The car park opens at 7am.", "Our cakes are baked daily.", "Parking costs 2 EUR."]


@pytest.mark.parametrize(
    ("goal", "inputs", "kind"),
    [
        ("Extract the sender and the date from the note", {"note": NOTE}, "extract"),
        ("Who did I meet, and where?", {"note": NOTE}, "extract"),
        ("Can you get the date I met her from the note?", {"note": NOTE}, "extract"),
        ("Is the customer happy or unhappy with the repair?", {"message": NOTE}, "classify"),
        ("Does this note mention a meeting?", {"note": NOTE}, "classify"),
        ("Categorise the note by topic: travel, work or family", {"note": NOTE}, "classify"),
        ("Pick a tone", {"text": NOTE, "labels": ["warm", "cold"]}, "classify"),
        ("Which of these passages talk about parking?", {"passages": PASSAGES}, "filter"),
        ("Find the lines relevant to parking", {"lines": PASSAGES}, "filter"),
        ("Fill in the slots city and day from the note", {"note": NOTE}, "fill_slots"),
        ("Write a haiku about autumn", {}, "generate"),
        ("Summarise the note in one sentence", {"note": NOTE}, "generate"),
        # A kind needs inputs of its shape: without a list there are no passages to filter,
        # and without any text there is nothing to extract from.
        ("Which of these passages talk about parking?", {"note": NOTE}, "extract"),
        ("Extract the city", {"count": 3}, "generate"),
    ],
)
def test_the_kind_fits_what_the_goal_asks(goal: str, inputs: dict[str, Any], kind: str) -> None:
    chosen, cue = choose_kind(goal, inputs)
    assert chosen == kind, cue
    assert cue


def test_the_input_the_goal_names_is_the_one_read() -> None:
    inputs = {"subject": "Hello", "body": NOTE * 3, "signature": "Priya"}

    def is_text(v: object) -> bool:
        return isinstance(v, str)

    assert pick_input("Extract the city from the signature", inputs, is_text) == "signature"
    assert pick_input("Extract the city", inputs, is_text) == "body"  # the longest


class Slm(ScriptedChatModel):
    """Answers each derivation from a table keyed by what the schema asks for."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__(respond=self.answer, name="slm")
        self.answers = answers

    def answer(self, messages: Sequence[Message], schema: dict[str, Any] | None) -> Any:
        assert schema is not None
        (asked,) = [k for k in schema["properties"] if k in self.answers]
        return {asked: self.answers[asked]}


def test_extract_gets_the_fields_the_slm_names_copied_from_the_text() -> None:
    goal = "Pull out the name of the person I met and the city she lives in"
    slm = Slm(
        {
            "fields": [
                {"name": "person", "description": "the name of the person I met"},
                {"name": "city", "description": "the city she lives in"},
                {"name": "city", "description": "a name taken: dropped"},
                {"name": "home", "description": "the city"},  # nothing new: dropped
                {"name": "met", "description": "I met"},  # the goal's "met": nothing new
            ]
        }
    )
    made = DirectPlanner(slm).plan(goal, {"note": NOTE})
    (step,) = made.plan.steps
    assert step.kind == "extract" and step.inputs == {"text": "$input.note", "copy": True}
    assert step.output is not None and list(step.output["properties"]) == ["person", "city"]
    assert step.output["properties"]["city"]["description"] == "the city she lives in"
    assert made.plan.output == "$answer"
    assert "fields named by the SLM: person, city" in made.why and "'Pull'" in made.why
    _, schema = slm.calls[0]
    assert schema is not None and schema[COPY_KEYWORD] == goal  # descriptions are spans
    assert schema["properties"]["fields"]["items"]["properties"]["name"]["pattern"]
    load_plan(made.plan, inputs={"note": NOTE})


def test_a_goal_that_asks_to_reword_is_not_copied() -> None:
    slm = Slm({"fields": [{"name": "date", "description": "the date"}]})
    made = DirectPlanner(slm).plan("Get the date from the note, converted to ISO", {"note": NOTE})
    assert made.plan.steps[0].inputs["copy"] is False


def test_fill_slots_gets_the_named_slots() -> None:
    slm = Slm(
        {"fields": [{"name": "city", "description": "city"}, {"name": "day", "description": "day"}]}
    )
    made = DirectPlanner(slm).plan("Fill in the slots city and day from the note", {"note": NOTE})
    (step,) = made.plan.steps
    assert step.kind == "fill_slots" and step.inputs["slots"] == {"city": "city", "day": "day"}
    assert made.plan.output == "$answer.slots"


def test_classify_gets_the_labels_the_goal_names() -> None:
    slm = Slm({"labels": ["happy", "unhappy", "happy"]})
    goal = "Is the customer happy or unhappy with the repair?"
    made = DirectPlanner(slm).plan(goal, {"message": NOTE})
    (step,) = made.plan.steps
    assert step.kind == "classify" and step.inputs["labels"] == ["happy", "unhappy"]
    assert made.plan.output == "$answer.label"


def test_a_yes_no_question_needs_no_slm() -> None:
    plan = direct_plan("Does this note mention a meeting?", {"note": NOTE})
    assert plan.steps[0].inputs == {"text": "$input.note", "labels": ["yes", "no"]}


def test_filter_gets_a_query_from_the_goal() -> None:
    slm = Slm({"query": "parking"})
    made = DirectPlanner(slm).plan(
        "Which of these passages talk about parking?", {"passages": PASSAGES}
    )
    (step,) = made.plan.steps
    assert step.kind == "filter" and step.inputs == {
        "query": "parking",
        "passages": "$input.passages",
    }
    assert made.plan.output == "$answer.kept"


def test_without_a_usable_answer_the_plan_is_generate_and_says_why() -> None:
    one_label = DirectPlanner(Slm({"labels": ["happy", "happy"]})).plan(
        "Is the customer happy or sad?", {"message": NOTE}
    )
    assert [s.kind for s in one_label.plan.steps] == ["generate"]
    assert "named nothing usable" in one_label.why
    garbage = ScriptedChatModel(respond=lambda m, s: "not json", name="slm")
    failing = DirectPlanner(garbage).plan("Extract the city from the note", {"note": NOTE})
    assert [s.kind for s in failing.plan.steps] == ["generate"]
    assert "kept failing validation" in failing.why
    assert len(garbage.calls) == 3  # the first answer and two re-asks
    no_slm = direct_plan("Extract the city from the note", {"note": NOTE})
    assert [s.kind for s in no_slm.steps] == ["generate"]


@pytest.mark.parametrize(
    ("inputs", "kind", "output"),
    [
        ({"text": "I love it", "labels": ["pos", "neg"]}, "classify", "$answer.label"),
        ({"email": "hello"}, "classify", "$answer.label"),  # a yes / no question
        ({}, "generate", "$answer.text"),
    ],
)
def test_direct_plan_is_one_valid_step(inputs: dict[str, object], kind: str, output: str) -> None:
    plan = direct_plan("Is this positive?", inputs)
    assert [s.kind for s in plan.steps] == [kind] and plan.output == output
    load_plan(plan, inputs=inputs)
