"""A second view of each field: the same text, the field asked alone, as a question.

The answer's own log-probabilities come from one prompt, in one order of fields, and
share its mistakes. Asking again differently gives evidence that errs differently:
each field becomes a question about the text (`What is the order number?`), and the
model's answer is scored, not generated: its value (or, for a null, the opening quote
of any value) against `null`. All of a step's questions share the text as a prefix and
are scored in one batched call.

    margin = log P(value | question) − log P(null | question)
    rival  = max over the value's rival spans of log P(rival | question) − log P(value | question)

The rivals (`spans.rivals`) are what the value could have been instead: the same span
run on or started earlier, or another id in the text. An answer the question prefers
a rival to is often a value of the wrong kind, which the answer's own tokens are sure
of (a ticket number copied as the order id). Only the kinds in `WEIGHS_RIVALS` score
them: for `extract`, fitted on the dev half and the fitting set, the rivals took the
out-of-fold AURC from 0.144 to 0.136, and fitted on either and scored on the other (a
voice it was not fitted on), 0.201 → 0.191 and 0.120 → 0.105; for `fill_slots`,
0.186 → 0.186, 0.248 → 0.237 and 0.163 → 0.169, not worth their rows (docs/calibration.md).

The questions are over half of what a reviewed extraction evaluates (93 of ~175 rows a
step on the held-out style texts), so a kind asks about its null fields only where its
calibrator weighs that answer (`ASKS_NULLS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.chat import ChatModel, Message
from taskloom.tools import spans
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

WEIGHS_RIVALS = frozenset({"extract"})
"""Kinds whose values are scored against their rival spans (module doc)."""


def question(name: str, description: str) -> str:
    """A field as a question: its description where it has one, else its name."""
    what = description.strip().rstrip(".") or name.replace("_", " ")
    return f"What is {what}?"


@dataclass(frozen=True)
class View:
    """What the second view says of one field (module doc)."""

    margin: float
    rival: float | None = None
    """None: the value has no rival span (or the field is null)."""


def rivals_of(
    name: str, value: Mapping[str, Any], text: str, descriptions: Mapping[str, str]
) -> list[str]:
    """The rival spans of field `name`'s value, none held by another field."""
    others = [h for n, h in value.items() if n != name and isinstance(h, str)]
    digits = spans.wants_digits(name, {"description": descriptions.get(name, "")})
    return spans.rivals(value[name], text, digits=digits, held=others)


def margins(
    value: Mapping[str, Any],
    text: str,
    descriptions: Mapping[str, str],
    *,
    model: ChatModel,
    usage: Usage,
    asks_nulls: bool = True,
    with_rivals: bool = True,
) -> dict[str, View]:
    """Per field of `value`, the second view (module doc); with `asks_nulls` off, only
    the fields with a value are asked, and with `with_rivals` off, no rival is scored."""
    names = [n for n, v in value.items() if (v is None and asks_nulls) or isinstance(v, str)]
    calls = []
    for name in names:
        v = value[name]
        shown = ' "' if v is None else " " + json.dumps(v, ensure_ascii=False)
        rivals = rivals_of(name, value, text, descriptions) if v and with_rivals else []
        messages: list[Message] = [
            {"role": "system", "content": INSTRUCTION},
            {
                "role": "user",
                "content": f"Text: {text}\nQuestion: {question(name, descriptions.get(name, ''))}"
                "\nAnswer:",
            },
        ]
        calls.append(
            (messages, [shown, " null", *(" " + json.dumps(r, ensure_ascii=False) for r in rivals)])
        )
    if not calls:
        return {}
    scored = score_all(model, calls, usage)
    return {
        name: View(s[0] - s[1], max(s[2:]) - s[0] if len(s) > 2 else None)
        for name, s in zip(names, scored, strict=True)
    }
