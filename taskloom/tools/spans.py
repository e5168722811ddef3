"""Better spans at the source: whole words, and number-like fields rescued from null.

Whole words: a value copied from inside a word is weighed against the whole word, and
a number-like value against the whole run of digit groups around it (`NUMBER_RUN`).

Greedy decoding chooses a value one token at a time, so its first token decides where
the span starts: for "My order A-1042 arrived" the model's first pick after `"order_id":
"` is "1" by a hair over "A", and the answer becomes "1042". Whenever a string value
is a piece of the input text that starts or ends inside a whitespace-delimited word,
the runtime scores the value and the whole word as the field's answer (teacher forced,
no grammar, the answer so far as the prefix, all fields in one batched call) and keeps
the whole word unless the piece is clearly likelier (`WHOLE_WORD_PRIOR`). Values
already on word boundaries cost nothing.

Rivals: the spans a value could have been instead (`rivals`), for the second view to
weigh against it (`reask.py`): the value run on or started earlier by a word or two
("July" → "July 1", "Bello" → "Aisha Bello"), the whole word around it, and for a
number-like field the text's other digit-carrying words (a ticket number given as the
order id).

Rescue: a small model leaves an order number null although the email has one (it
wanted a bare number, which the schema forbids). A null in a field that asks for a
number, an id or a date, while the text has digit-carrying words that no field holds,
is weighed against those words with the absence check's own rule (`rescue`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from taskloom.chat import ChatModel, Message
from taskloom.tools.absence import answer_prefix
from taskloom.tools.base import Usage, score_all

NUMERIC_HINT = re.compile(
    r"number|phone|\bid\b|_id\b|code|amount|total|price|cost|date|time|zip|postcode|"
    r"quantity|count|reference|\bref\b|invoice|order",
    re.IGNORECASE,
)
"""Field names and descriptions whose values usually carry digits."""

WHOLE_WORD_PRIOR = 1.0
"""Nats by which a piece of a word must beat the whole word to be kept: the model is
often near a tie on where a value starts ("1" or "A" of "A-1042"), and a copied value
that cuts a word is rarely what was meant."""

EDGE = "\"'()[]{}<>.,;:!?"
"""Punctuation trimmed from a widened word's ends ("Lyon." → "Lyon")."""


NUMBER_RUN = re.compile(r"[+(]?\d[\d()]*(?:[ \-./][(]?\d[\d()]*)*")
"""Digit groups joined by single spaces, hyphens, dots or slashes: a phone number
written in groups ("+44 20 7946 0321"), which a copied value often stops short of."""


def widened(value: str, text: str) -> list[str]:
    """The value widened to the word boundaries around each place it occurs in `text`,
    and, for a number-like value, to the whole digit run it starts or ends inside."""
    found: list[str] = []
    for m in re.finditer(re.escape(value), text):
        start, end = m.start(), m.end()
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        word = text[start:end].strip(EDGE)
        if value in word and word != value and word not in found:
            found.append(word)
    if any(c.isdigit() for c in value) and NUMBER_RUN.fullmatch(value.strip()):
        for m in NUMBER_RUN.finditer(text):  # a run ends in a digit or a bracket
            run = m.group()
            if value in run and run != value and run not in found:
                found.append(run)
    return found


def widen(
    value: dict[str, Any],
    text: str,
    *,
    messages: Sequence[Message],
    model: ChatModel,
    usage: Usage,
) -> dict[str, Any]:
    """The answer with each string value that sits inside a word replaced by the whole
    word where the model finds that likelier (module doc)."""
    fields, calls, prefixes, options = [], [], [], []
    for name, v in value.items():
        if not isinstance(v, str) or not v.strip() or v not in text:
            continue
        wider = widened(v, text)
        if not wider:
            continue
        choices = [v, *wider]
        fields.append(name)
        options.append(choices)
        calls.append((messages, [" " + json.dumps(c, ensure_ascii=False) for c in choices]))
        prefixes.append(answer_prefix(value, name))
    if not calls:
        return value
    scored = score_all(model, calls, usage, prefixes=prefixes)
    out = dict(value)
    for name, choices, scores in zip(fields, options, scored, strict=True):
        # choices[0] is the piece the model wrote; the rest are whole words around it.
        best = max(range(1, len(choices)), key=scores.__getitem__)
        out[name] = choices[0] if scores[0] > scores[best] + WHOLE_WORD_PRIOR else choices[best]
    return out


def wants_digits(name: str, schema: Any) -> bool:
    """Whether a field's name or description asks for a number-like value."""
    what = schema.get("description", "") if isinstance(schema, dict) else ""
    fmt = schema.get("format", "") if isinstance(schema, dict) else ""
    return bool(NUMERIC_HINT.search(f"{name.replace('_', ' ')} {name} {what} {fmt}"))


def digit_runs(text: str) -> list[str]:
    """The whitespace-delimited words of `text` that carry a digit, edge punctuation off."""
    found: list[str] = []
    for word in text.split():
        word = word.strip(EDGE)
        if any(c.isdigit() for c in word) and word not in found:
            found.append(word)
    return found


def unclaimed(value: dict[str, Any], text: str) -> list[str]:
    """The text's digit-carrying words that no field of `value` holds or is part of."""
    held = [v for v in value.values() if isinstance(v, str) and v]
    return [w for w in digit_runs(text) if not any(w in h or h in w for h in held)]


RIVALS = 12
"""The most rival spans weighed for one value: each is a scored continuation."""
CLAUSE_END = ".,;:!?"
"""A word ending in one of these ends a rival's run on or earlier start."""


def rivals(value: str, text: str, *, digits: bool, held: Sequence[str] = ()) -> list[str]:
    """Spans of `text` that the field's value could have been instead (module doc),
    none of them a value another field holds (`held`).

    Runs on and earlier starts stay within the value's line and stop at a sentence's or
    clause's punctuation; `digits` adds the other digit-carrying words.
    """
    at = text.find(value)
    if at < 0 or not value.strip():
        return []
    found: list[str] = []

    def add(span: str) -> None:
        span = span.strip(EDGE + " ")
        if span and span != value and span not in found and span not in held:
            found.append(span)

    end = at + len(value)
    line_end = text.find("\n", end)
    after = list(re.finditer(r"\S+", text[end : len(text) if line_end < 0 else line_end]))
    if value[-1] not in CLAUSE_END:
        for word in after[:3]:
            add(text[at : end + word.end()])
            if word.group()[-1] in CLAUSE_END:
                break
    line_start = text.rfind("\n", 0, at) + 1
    before = list(re.finditer(r"\S+", text[line_start:at]))
    for word in reversed(before[-2:]):
        if word.group()[-1] in CLAUSE_END:
            break
        add(text[line_start + word.start() : end])
    for whole in widened(value, text):
        add(whole)
    if digits:
        for run in digit_runs(text):
            if not any(run in h or h in run for h in held) and value not in run:
                add(run)
    return found[:RIVALS]


def rescue(
    value: dict[str, Any],
    text: str,
    properties: dict[str, Any],
    *,
    messages: Sequence[Message],
    model: ChatModel,
    usage: Usage,
    null_prior: float,
) -> dict[str, Any]:
    """A null left in a field that asks for a number, an id or a date, while the text has
    digit-carrying words no other field holds: each such word is scored as the field's
    value against null (teacher forced, the answer so far as the prefix). The likeliest
    one replaces the null when the absence check would let it stand (`null_prior`)."""
    names = [n for n, v in value.items() if v is None and wants_digits(n, properties.get(n))]
    free = unclaimed(value, text)
    if not names or not free:
        return value
    calls = [
        (messages, [" null", *(" " + json.dumps(w, ensure_ascii=False) for w in free)])
        for _ in names
    ]
    scored = score_all(model, calls, usage, prefixes=[answer_prefix(value, n) for n in names])
    out = dict(value)
    for name, (null, *words) in zip(names, scored, strict=True):
        best = max(range(len(words)), key=words.__getitem__)
        if null - words[best] + null_prior < 0 and free[best] not in out.values():
            out[name] = free[best]
    return out
