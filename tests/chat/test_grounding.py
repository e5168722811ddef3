"""Grounded text: ids and numbers must come from the sources, checked token by token."""

from __future__ import annotations

import pytest

from taskloom.chat.grounding import Grounding, halts

SOURCE = "Reply to Maria about order A-1042; refunds take 5 business days; total €84.90"


@pytest.mark.parametrize(
    ("text", "piece", "allowed"),
    [
        ("Your order ", "A", True),  # no digit yet
        ("Your order A-", "10", True),  # the start of A-1042
        ("Your order A-10", "42", True),
        ("Your order A-1042", ".", True),  # a sentence end, not part of the id
        ("Your order A-104", " ", False),  # A-104 is not A-1042
        ("refund B-", "100", False),  # invented
        ("in ", "5", True),
        ("in ", "24", False),
        ("a total of €", "84", True),
        ("a total of €84", ".90", True),
        ("order ", "1042", True),  # bounded inside A-1042
        # the text is a JSON string: an escape's hex digits are no id, what follows is
        ("a total of \\u", "20ac", True),
        ("a total of \\u20ac", "84", True),
        ("a total of \\u20ac", "99", False),
        ("refunds take\\n", "7", False),
    ],
)
def test_each_token_is_checked_against_the_source(text: str, piece: str, allowed: bool) -> None:
    assert Grounding(SOURCE).allows(text, piece) is allowed


def test_invented_lists_what_a_finished_text_made_up() -> None:
    text = "Dear Maria, order A-1042 (refund B-100) arrives in 5 days, within 24 hours."
    assert Grounding(SOURCE).invented(text) == ["B-100", "24"]
    assert Grounding(SOURCE).invented("Dear Maria, thank you.") == []


@pytest.mark.parametrize(
    ("text", "piece", "halted"),
    [
        ("about refund B-", "311", True),  # the start of an invented id: stop it there
        ("about refund B", "-311", True),
        ("about refund B-", "A", True),
        ("your order A-10", "43", False),  # has digits: grounding steers it to A-1042
        ("about refund ", "B-311", False),  # no run open: nothing to stop
        ("about refund", " 24", False),  # starts a new run, does not carry one on
    ],
)
def test_a_run_a_turned_down_token_would_carry_on_is_stopped(
    text: str, piece: str, halted: bool
) -> None:
    assert halts(text, piece) is halted
