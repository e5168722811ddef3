"""Quantities a text states that its source does not (`quantities.py`)."""

from __future__ import annotations

import pytest

from taskloom.step import StepJob, StepResult, StepStatus
from taskloom.tools import generate
from taskloom.tools.quantities import changed_quantities, quantities, source_sentences
from taskloom.workflows.review import why_asked

POLICY = [
    "Refunds are issued within 5 business days after we receive the item.",
    "Shipping to France takes 3 to 5 days.",
    "Our office dog is called Biscuit.",
]
SOURCE = source_sentences("Draft a reply to Maria Lopez", POLICY, {"order_id": "A-1042"})


def test_numbers_in_digits_and_words_compare_by_value_and_by_part() -> None:
    words = ("5", "05", "five", "twice", "84.90", "3-5", "14.03.2025", "item")
    assert [quantities(w) for w in words] == [
        ["5"],
        ["5"],
        ["5"],
        ["2"],
        ["84", "90"],
        ["3", "5"],
        ["14", "3", "2025"],
        [],
    ]


@pytest.mark.parametrize(
    ("reply", "changed"),
    [
        # the main job's reply, as the 270M model wrote it
        (
            "Refunds are issued within the same business day after we receive the item.",
            ['"5" → "the same"'],
        ),
        (
            "Refunds are issued within ten business days after we receive the item.",
            ['"5" → "ten"'],
        ),
        ("Shipping to France takes two weeks.", ['"3 to 5 days" → "two weeks"']),
        # the same quantities, in words or rephrased around them: nothing changed
        ("Shipping to France takes three to five days.", []),
        ("Shipping to France takes up to three to five days.", []),
        ("Shipping to France takes 3-5 days.", []),
        ("Good news: refunds are issued within 5 business days once we receive the item.", []),
        # a shorter restatement drops the number with its words: not a wrong one
        ("Refunds are issued after we receive the item.", []),
        # sentences that restate nothing are not compared
        ("Dear Maria Lopez, thank you for writing about order A-1042.", []),
        ("We will call you in 2 days.", []),
    ],
)
def test_a_restated_sentence_keeps_its_quantities(reply: str, changed: list[str]) -> None:
    assert changed_quantities(reply, SOURCE) == changed


def test_a_number_word_no_source_holds_is_reported_outside_a_restatement_too() -> None:
    policy = source_sentences(["Faulty items within the first 30 days are replaced free."])
    reply = "Thank you for writing about the faulty item in the first three months."
    assert changed_quantities(reply, policy) == ['"three" → not in the source']
    kept = source_sentences(["Lost-and-found items are kept at reception for two weeks."])
    assert changed_quantities("We will keep them for two weeks.", kept) == []
    assert changed_quantities("One of our agents will call you.", kept) == []


def test_each_sentence_of_a_reply_is_compared_with_its_closest_source_sentence() -> None:
    reply = (
        "Hello Maria Lopez. Shipping to France takes 3 to 5 days. Refunds are issued"
        " within 7 business days after we receive the item! Our office dog is called Biscuit."
    )
    assert changed_quantities(reply, SOURCE) == ['"5" → "7"']


def test_a_record_in_the_context_is_a_source_too() -> None:
    context = [{"name": "Ravi", "note": "The replacement ships within 48 hours of approval."}]
    sources = source_sentences("Reply to Ravi", context)
    said = "Your replacement ships within 24 hours of approval."
    assert changed_quantities(said, sources) == ['"48" → "24"']


def test_generate_flags_a_reply_that_changes_a_quantity_of_its_context() -> None:
    inputs = generate.Inputs(instruction="Draft a reply to Maria Lopez", context=POLICY)
    wrong = {"text": "Refunds are issued within the same business day after we receive the item."}
    right = {"text": "Refunds are issued within 5 business days after we receive the item."}
    flagged = generate.review(wrong, inputs, {}, None, [], None)  # type: ignore[arg-type]
    assert flagged.meta["changed"] == ['"5" → "the same"']
    assert flagged.meta["accepted"] is False
    kept = generate.review(right, inputs, {}, None, [], None)  # type: ignore[arg-type]
    assert kept.meta == {"invented": [], "changed": [], "accepted": True}


def test_the_review_desk_says_which_quantity_was_changed() -> None:
    job = StepJob(run_id="r", step_id="reply", kind="generate")
    meta = {"invented": [], "changed": ['"5" → "the same"'], "accepted": False}
    result = StepResult(
        run_id="r", step_id="reply", status=StepStatus.DONE, meta=meta, accepted=False
    )
    why = 'not accepted: a quantity its sources lack, "5" → "the same"'
    assert why_asked(job, result, "uncertain") == why
