"""Whole-word spans: a value copied from inside a word is weighed against the whole word.

Greedy decoding chooses a value one token at a time, so its first token decides where
the span starts: for "My order A-1042 arrived" the model's first pick after `"order_id":
"` is "1" by a hair over "A", and the answer becomes "1042". Whenever a string value
is a piece of the input text that starts or ends inside a whitespace-delimited word,
the runtime scores the value and the whole word as the field's answer (teacher forced,
no grammar, the answer so far as the prefix, all fields in one batched call) and keeps
the likelier one. Values already on word boundaries cost nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from taskloom.chat import ChatModel, Message
from taskloom.tools.absence import answer_prefix
from taskloom.tools.base import Usage, score_all

EDGE = "\"'()[]{}<>.,;:!?"
"""Punctuation trimmed from a widened word's ends ("Lyon." → "Lyon")."""


def widened(value: str, text: str) -> list[str]:
    """The value widened to the word boundaries around each place it occurs in `text`."""
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
        best = max(range(len(choices)), key=scores.__getitem__)
        out[name] = choices[best]
    return out
