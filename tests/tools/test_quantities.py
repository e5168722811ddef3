"""Quantities a text states that its source does not (`quantities.py`)."""

from __future__ import annotations

import pytest

from taskloom.step import StepJob, StepResult, StepStatus
from taskloom.tools import generate
from taskloom.tools.quantities import (
    changed_quantities,
    durations,
    number_word,
    ordinal_word,
    quantities,
    readings,
    source_sentences,
    stated,
    words,
    written_otherwise,
)
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
        # sentences that restate nothing: only number words and durations are compared
        ("Dear Maria Lopez, thank you for writing about order A-1042.", []),
        ("We will call you in 2 days.", ['"2 days" → not in the source']),
        ("We will call you on 3 March.", []),
    ],
)
def test_a_restated_sentence_keeps_its_quantities(reply: str, changed: list[str]) -> None:
    assert changed_quantities(reply, SOURCE) == changed


def test_digits_count_with_their_suffix_and_durations_by_their_length() -> None:
    assert [quantities(w) for w in ("6am", "21st", "10kg", "TK22")] == [["6"], ["21"], ["10"], []]
    said = words("returns within 3 to 5 business days or half an hour or a monthly fee")
    assert durations(said) == [(2, 7, [4320.0, 7200.0]), (8, 11, [30.0]), (13, 14, [43200.0])]
    assert stated(words("the 14 March")) == [[[]], [["14"]], [["3"]]]
    assert stated(words("you may 3")) == [[[]], [[]], [["3"]]]  # "may" before a day: the verb
    assert stated(words("the first"), ordinals=True) == [[[]], [["1"]]]


def test_an_amount_compares_by_value_unless_it_may_be_a_date_or_a_time() -> None:
    assert readings("2,400.50") == [["2400.5"]]
    assert readings("0.75") == [["0.75"]]
    assert readings("24.06") == [["24", "6"], ["24.06"]]  # 24 June, or an amount
    assert readings("9.15pm") == [["9", "15"], ["9.15"]]
    assert readings("2400") == [["2400"]]
    fees = source_sentences(["A replacement card costs 7.50 pounds and arrives in 2,400 ms."])
    assert (
        changed_quantities("A replacement card costs 7.5 pounds and arrives in 2400 ms.", fees)
        == []
    )
    said = "A replacement card costs 5.70 pounds and arrives in 2,400 ms."
    assert changed_quantities(said, fees) == ['"7.50" → "5.70"']


def test_a_number_written_otherwise_is_not_invented_but_an_id_is() -> None:
    sources = source_sentences(["The lease of flat B-12 ends on 30 June 2026, after six months."])
    for run in ("30/06/2026", "6", "2026-06-30"):
        assert written_otherwise(run, sources)
    for run in ("B-13", "31/06/2026", "7"):
        assert not written_otherwise(run, sources)
    inputs = generate.Inputs(instruction="Reply to Ines", context=["The fee is 1,800 euros."])
    reply = {"text": "The fee is 1800 euros, for flat B-14."}
    review = generate.review(reply, inputs, {}, None, [], None)  # type: ignore[arg-type]
    assert review.meta["invented"] == ["B-14"]


LEASE = source_sentences(
    ["Tenants give 8 weeks of notice.", "Keys are returned on 30 June 2026 at 6pm."]
)


@pytest.mark.parametrize(
    ("reply", "changed"),
    [
        # the same length, in other units, and the same date, written otherwise
        ("Tenants give two months of notice.", ['"8 weeks" → "two months"']),
        ("Tenants give 56 days of notice.", []),
        ("Keys are returned on 2026-06-30 at 6pm.", []),
        ("Keys are returned on June 30th 2026 at 6pm.", []),
        ("Keys are returned on 30 July 2026 at 6pm.", ['"june" → "july"']),
        ("Keys are returned on 30 June 2026 at 5pm.", ['"6pm" → "5pm"']),
        # a duration no source states, outside a restatement
        ("Thank you Ana, you have a week to decide.", ['"a week" → not in the source']),
        ("Thank you Ana, you have eight weeks to decide.", []),
        ("Thank you Ana, one of us will be in touch.", []),
    ],
)
def test_durations_compare_by_length_and_dates_by_their_parts(
    reply: str, changed: list[str]
) -> None:
    assert changed_quantities(reply, LEASE) == changed


def test_compound_number_words_and_ordinals_count() -> None:
    assert [number_word(w) for w in ("thirty-two", "ninety-one", "seven", "one", "twenty-x")] == [
        32,
        91,
        7,
        None,
        None,
    ]
    assert [ordinal_word(w) for w in ("nineteenth", "thirty-first", "twenty-tenth")] == [
        19,
        31,
        None,
    ]
    rule = source_sentences(["Visitors aged 16 and over sign in on the 22nd of each month."])
    said = "Visitors aged sixteen and over sign in on the twenty-second of each month."
    assert changed_quantities(said, rule) == []
    said = "Visitors aged seventeen and over sign in on the twenty-second of each month."
    assert changed_quantities(said, rule) == ['"16" → "seventeen"']


def test_an_ordinal_word_may_restate_a_number_but_is_never_reported() -> None:
    rent = source_sentences(["Rent is due on the 1st of each month by bank transfer."])
    said = "Rent is due on the first of each month by bank transfer."
    assert changed_quantities(said, rent) == []
    assert changed_quantities("First, rent is due each month by bank transfer.", rent) == []


def test_a_number_word_no_source_holds_is_reported_outside_a_restatement_too() -> None:
    policy = source_sentences(["Faulty items within the first 30 days are replaced free."])
    reply = "Thank you for writing about the faulty item in the first three months."
    assert changed_quantities(reply, policy) == ['"three months" → not in the source']
    reply = "Thank you for writing, we have replaced three faulty items."
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
