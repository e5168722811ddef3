"""Per-field signals: where each value sits in the answer, and what its tokens say."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from taskloom.chat import Message, ScriptedChatModel, TokenLogprob
from taskloom.tools import reask
from taskloom.tools.base import Usage
from taskloom.tools.confidence import FEATURES, Signals, field_tokens, signals, value_spans
from taskloom.tools.spans import rivals, widen, widened


def tok(text: str, lp: float, top: float | None = None) -> TokenLogprob:
    return TokenLogprob(text=text, logprob=lp, top_logprob=lp if top is None else top)


ANSWER = ' {"name": "Maria Lopez", "order_id": null}'
TOKENS = [
    tok(' {"', -0.1),
    tok("name", -0.1),
    tok('":', -0.1),
    tok(' "', -0.1),
    tok("Maria", -0.5),
    tok(" Lopez", -2.0),
    tok('",', -0.1),
    tok(' "', -0.1),
    tok("order_id", -0.1),
    tok('":', -0.1),
    tok(" null", -6.0, -0.5),
    tok("}", -0.1),
]


def test_value_spans_find_each_top_level_value() -> None:
    spans = value_spans(ANSWER)
    assert ANSWER[slice(*spans["name"])] == '"Maria Lopez"'
    assert ANSWER[slice(*spans["order_id"])] == "null"
    nested = '{"a": "x", "b": [1, {"c": 2}], "d": 3}'
    start, end = value_spans(nested)["b"]
    assert nested[start:end] == '[1, {"c": 2}]'
    assert value_spans("not json") == {}
    assert value_spans('{"a": "unfinished') == {}


def test_field_tokens_are_the_values_own_tokens() -> None:
    found = field_tokens(ANSWER, TOKENS)
    assert [t.text for t in found["name"]] == ["Maria", " Lopez"]
    assert [t.text for t in found["order_id"]] == [" null"]


def test_signals_read_the_tokens_the_margins_and_the_shapes() -> None:
    answer = {"name": "Maria Lopez", "order_id": "Maria Lopez"}
    found = signals(
        answer,
        final={"name": "Maria Lopez", "order_id": None},
        text=ANSWER,
        tokens=TOKENS,
        margins={"order_id": 3.0},
        properties={"name": {}, "order_id": {"description": "the order number"}},
        reasked={"name": reask.View(2.5)},
    )
    name, order = found["name"], found["order_id"]
    assert (name.lp_min, name.lp_first, name.n_tokens) == (-2.0, -0.5, 2)
    assert not name.is_null and not name.has_margin and name.reask == 2.5
    assert order.is_null and order.margin == 3.0 and order.override == 5.5
    assert order.wants_digits and not name.wants_digits
    assert len(name.vector()) == len(FEATURES)
    assert Signals.from_meta(order.describe()) == order


def test_the_same_span_for_two_fields_is_a_signal() -> None:
    final = {"phone": "77120", "order_id": "77120"}
    found = signals(final, final=final, text="", tokens=None, margins={}, properties={})
    assert found["phone"].is_duplicate and found["order_id"].is_duplicate


def test_a_value_inside_a_word_is_widened_to_the_word() -> None:
    text = "My order A-1042 arrived. I'm in Lyon."
    assert widened("1042", text) == ["A-1042"]
    assert widened("Lyo", text) == ["Lyon"]
    assert widened("Lyon", text) == []  # already whole ("Lyon." less its full stop)
    assert widened("order", text) == []


def test_a_number_like_value_is_widened_to_its_run_of_digit_groups() -> None:
    text = "Call me on +44 20 7946 0321. Order 66720. Paid 1.50 EUR."
    assert widened("44", text) == ["+44", "+44 20 7946 0321"]
    assert widened("7946 0321", text) == ["+44 20 7946 0321"]
    assert widened("66720", text) == []  # the run ends at the full stop
    assert widened("1.50", text) == []  # a word of its own, and no digits follow
    assert widened("Order", text) == []  # not number-like


@pytest.mark.parametrize(("piece_ahead_by", "kept"), [(0.5, "A-1042"), (2.0, "1042")])
def test_a_piece_of_a_word_is_kept_only_when_clearly_likelier(
    piece_ahead_by: float, kept: str
) -> None:
    text = "My order A-1042 arrived broken."

    def score(continuation: str) -> float:
        return -1.0 + piece_ahead_by if '"1042"' in continuation else -1.0

    model = ScriptedChatModel(scores=score)
    messages: list[Message] = [{"role": "user", "content": text}]
    got = widen({"order_id": "1042"}, text, messages=messages, model=model, usage=Usage())
    assert got == {"order_id": kept}


@pytest.mark.parametrize(("asks_nulls", "asked"), [(True, ["name", "order_id"]), (False, ["name"])])
def test_the_second_view_asks_a_null_field_only_where_the_kind_weighs_it(
    asks_nulls: bool, asked: list[str]
) -> None:
    questions: list[str] = []

    class Recording(ScriptedChatModel):
        def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
            questions.append(str(messages[-1]["content"]).split("Question: ")[1])
            return [0.0 if c == " null" else -1.0 for c in continuations]

    descriptions = {"name": "the customer's name", "order_id": "the order number"}
    got = reask.margins(
        {"name": "Maria Lopez", "order_id": None}, "Maria Lopez here, no order yet.",
        descriptions, model=Recording(), usage=Usage(), asks_nulls=asks_nulls,
    )  # fmt: skip
    assert sorted(got) == asked
    assert len(questions) == len(asked)
    assert got["name"].margin == -1.0
    assert "extract" not in reask.ASKS_NULLS and "fill_slots" in reask.ASKS_NULLS


RIVAL_TEXT = "Hi, Aisha Bello here. Ticket CS-104233, about order 88213.\nPaid 12 May 2026"


def test_a_values_rivals_run_on_start_earlier_and_for_digits_are_the_other_ids() -> None:
    # runs on to the word that ends the clause; no earlier start past "Hi,"
    assert rivals("Aisha", RIVAL_TEXT, digits=False) == ["Aisha Bello", "Aisha Bello here"]
    # the comma right after the value ends it; the earlier start takes "Ticket"
    assert rivals("CS-104233", RIVAL_TEXT, digits=False) == ["Ticket CS-104233"]
    # a number-like field's rivals add the other ids, not one another field holds,
    # and never reach across a line
    assert rivals("CS-104233", RIVAL_TEXT, digits=True, held=["88213"]) == [
        "Ticket CS-104233", "12", "2026",
    ]  # fmt: skip
    assert rivals("May", RIVAL_TEXT, digits=False) == ["May 2026", "12 May", "Paid 12 May"]
    assert rivals("absent", RIVAL_TEXT, digits=True) == []


def test_the_second_view_scores_a_value_against_its_best_rival() -> None:
    def score(messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        return [
            {' "88213"': -4.0, " null": -6.0, ' "A-5"': -1.0}.get(c, -9.0) for c in continuations
        ]

    class Scoring(ScriptedChatModel):
        def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
            return score(messages, continuations)

    text = "ticket A-5 about order 88213"
    descriptions = {"order_id": "the order number"}
    got = reask.margins({"order_id": "88213"}, text, descriptions, model=Scoring(), usage=Usage())
    assert got["order_id"] == reask.View(margin=2.0, rival=3.0)  # "A-5" beats it by 3 nats
    plain = reask.margins(
        {"order_id": "88213"}, text, descriptions, model=Scoring(), usage=Usage(),
        with_rivals=False,
    )  # fmt: skip
    assert plain["order_id"] == reask.View(margin=2.0, rival=None)


def test_a_rival_is_a_signal_of_a_present_value_only() -> None:
    base = Signals(is_null=False, has_margin=False, margin=0.0, lp_min=-1.0, lp_first=-1.0,
                   override=0.0, n_tokens=2, is_duplicate=False, wants_digits=True,
                   has_digits=True)  # fmt: skip
    rivalled = Signals(**{**base.__dict__, "rival": 25.0})
    null = Signals(**{**base.__dict__, "is_null": True, "rival": 3.0})
    assert base.vector()[-2:] == [0.0, 0.0]
    assert rivalled.vector()[-2:] == [1.0, 10.0]  # clipped
    assert null.vector()[-2:] == [0.0, 0.0]
    assert Signals.from_meta(rivalled.describe()) == Signals(**{**base.__dict__, "rival": 25.0})
