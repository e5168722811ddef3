"""A second view of each field: the same text, the field asked alone, as a question.

The answer's own log-probabilities come from one prompt, in one order of fields, and
share its mistakes. Asking again differently gives evidence that errs differently:
each field becomes a question about the text (`What is the order number?`), and the
model's answer is scored, not generated: its value (or, for a null, the opening quote
of any value) against `null`. All of a step's questions share the text as a prefix and
are scored in one batched call.

    margin = log P(value | question) − log P(null | question)

The questions are over half of what a reviewed extraction evaluates (93 of ~175 rows a
step on the held-out style texts), so a kind asks about its null fields only where its
calibrator weighs that answer (`ASKS_NULLS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import Usage, score_all

INSTRUCTION = (
    "Answer the question about the text with words copied from the text,"
    " as a JSON string, or null if the text does not say."
)

ASKS_NULLS = frozenset({"fill_slots"})
"""Kinds whose null fields are asked too. `extract`'s are not: fitted on the dev halves
without their margin, its calibrator ranked as well (out of fold, AURC 0.117 against
0.118; test halves 0.120 against 0.122), and a null is over half of its fields.
`fill_slots` loses without it (dev AURC 0.153 against 0.150)."""


def question(name: str, description: str) -> str:
    """A field as a question: its description where it has one, else its name."""
    what = description.strip().rstrip(".") or name.replace("_", " ")
    return f"What is {what}?"


def margins(
    value: Mapping[str, Any],
    text: str,
    descriptions: Mapping[str, str],
    *,
    model: ChatModel,
    usage: Usage,
    asks_nulls: bool = True,
) -> dict[str, float]:
    """Per field of `value`, the second view's margin (module doc); with `asks_nulls`
    off, only the fields with a value are asked."""
    names = [n for n, v in value.items() if (v is None and asks_nulls) or isinstance(v, str)]
    calls = []
    for name in names:
        v = value[name]
        shown = ' "' if v is None else " " + json.dumps(v, ensure_ascii=False)
        messages: list[Message] = [
            {"role": "system", "content": INSTRUCTION},
            {
                "role": "user",
                "content": f"Text: {text}\nQuestion: {question(name, descriptions.get(name, ''))}"
                "\nAnswer:",
            },
        ]
        calls.append((messages, [shown, " null"]))
    if not calls:
        return {}
    scored = score_all(model, calls, usage)
    return {name: s[0] - s[1] for name, s in zip(names, scored, strict=True)}
