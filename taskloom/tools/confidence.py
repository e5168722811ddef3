"""Per-field confidence for `extract` and `fill_slots`: the probability that a value is right.

One log-likelihood (null against the value, `absence.py`) does not separate right
answers from wrong ones: a 270M model copies "Peter" as the company and believes it.
So each field's value is described by several cheap signals, all read from work the
step already did, and a small calibrator (`taskloom.calibration`, a logistic model
fitted on dev data) turns them into a probability:

- the value's tokens as the model generated them: the lowest log-probability (a
  length-free minimum, not a sum; Gupta et al., ICLR 2024), the first token's (where
  the span was chosen), and how far the grammar overrode the model's own first choice;
- the absence check's margin, log P(null) − log P(value);
- a second view: the field asked alone, as a question, its value scored against null
  (`reask.py`; a null field of `extract` is not asked, `reask.ASKS_NULLS`), and against
  its rivals, the spans it could have been instead;
- the same span given to two fields ("77120" as both phone and order id);
- the value's shape against the field: digits where the field's name or description
  asks for a number, an id, a date or an amount, and none where it does not.

A field whose value is null is described the same way, with the margin of the null
and the tokens of the candidate the absence check set aside.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.calibration import Calibration
from taskloom.chat import ChatModel, Message, TokenLogprob
from taskloom.tools import absence, reask, spans
from taskloom.tools.base import Review, Usage
from taskloom.tools.spans import unclaimed, wants_digits

FLOOR = -20.0
"""Log-probabilities are clipped here: a -40 and a -25 say the same thing."""


@dataclass(frozen=True)
class Signals:
    """What is known about one field's value, before calibration."""

    is_null: bool
    has_margin: bool  # the absence check weighed this field
    margin: float  # log P(null) − log P(value); 0 without a check
    lp_min: float  # the value's least likely token (0 for null)
    lp_first: float  # its first token
    override: float  # the most the grammar overrode the model on the value's tokens
    n_tokens: int
    is_duplicate: bool  # another field has the same value
    wants_digits: bool  # the field's name or description asks for a number-like value
    has_digits: bool
    reask: float = 0.0  # the second view's margin, log P(value) − log P(null) (reask.py)
    unclaimed: bool = False  # the text has digit-carrying words that no field holds
    rival: float | None = None  # the second view's best rival span over the value (reask.py)

    def vector(self) -> list[float]:
        """The calibrator's inputs, in `FEATURES` order."""
        present = 0.0 if self.is_null else 1.0
        null = 1.0 - present
        margin = max(min(self.margin, 20.0), -20.0) if self.has_margin else 0.0
        want, has = float(self.wants_digits), float(self.has_digits)
        rivalled = present * float(self.rival is not None)
        return [
            1.0,
            null,
            present * self.lp_min,
            present * self.lp_first,
            present * self.override,
            present * math.log1p(self.n_tokens),
            present * margin,
            null * margin,
            present * float(self.is_duplicate),
            present * want * (1 - has),
            present * (1 - want) * has,
            null * want,
            present * max(min(self.reask, 20.0), -20.0),
            null * max(min(self.reask, 20.0), -20.0),
            null * want * float(self.unclaimed),
            rivalled,
            rivalled * max(min(self.rival or 0.0, 10.0), -10.0),
        ]

    def describe(self) -> dict[str, Any]:
        """The signals as the step's metadata shows them (`from_meta` reads them back)."""
        return {
            "null": self.is_null,
            "margin": round(self.margin, 3) if self.has_margin else None,
            "lp_min": round(self.lp_min, 3),
            "lp_first": round(self.lp_first, 3),
            "override": round(self.override, 3),
            "tokens": self.n_tokens,
            "duplicate": self.is_duplicate,
            "wants_digits": self.wants_digits,
            "has_digits": self.has_digits,
            "reask": round(self.reask, 3),
            "unclaimed": self.unclaimed,
            "rival": None if self.rival is None else round(self.rival, 3),
        }

    @classmethod
    def from_meta(cls, d: dict[str, Any]) -> Signals:
        """The signals back from `describe()` (to fit a calibrator on recorded steps)."""
        return cls(
            is_null=bool(d["null"]),
            has_margin=d["margin"] is not None,
            margin=float(d["margin"] or 0.0),
            lp_min=float(d["lp_min"]),
            lp_first=float(d["lp_first"]),
            override=float(d["override"]),
            n_tokens=int(d["tokens"]),
            is_duplicate=bool(d["duplicate"]),
            wants_digits=bool(d["wants_digits"]),
            has_digits=bool(d["has_digits"]),
            reask=float(d.get("reask", 0.0)),
            unclaimed=bool(d.get("unclaimed", False)),
            rival=d.get("rival"),
        )


FEATURES = [
    "bias",
    "null",
    "lp_min",
    "lp_first",
    "override",
    "log_tokens",
    "margin_present",
    "margin_null",
    "duplicate",
    "digits_missing",
    "digits_unexpected",
    "null_where_digits",
    "reask_present",
    "reask_null",
    "null_beside_free_digits",
    "rivalled",
    "rival_margin",
]
"""Appended to, never reordered: a calibration fitted before a feature existed has
fewer weights, and the features it lacks are not weighed (`Calibration.field_confidence`)."""


def value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each top-level value of a JSON object sits in `text` (character offsets).

    An answer that is not an object, or not whole, gives what could be read.
    """
    spans: dict[str, tuple[int, int]] = {}
    decoder = json.JSONDecoder()
    i = text.find("{")
    if i < 0:
        return spans
    i += 1
    try:
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text) or text[i] != '"':
                return spans
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            while text[i] in " \t\r\n:":
                i += 1
            _, end = decoder.raw_decode(text, i)
            spans[key] = (i, end)
            i = end
    except (ValueError, IndexError):
        return spans


def tokens_within(tokens: Sequence[TokenLogprob], start: int, end: int) -> list[TokenLogprob]:
    """The tokens that overlap characters [start, end) of their joined text."""
    found, at = [], 0
    for t in tokens:
        nxt = at + len(t.text)
        if nxt > start and at < end:
            found.append(t)
        at = nxt
    return found


def field_tokens(text: str, tokens: Sequence[TokenLogprob] | None) -> dict[str, list[TokenLogprob]]:
    """Each top-level field's value tokens (a string's content, without its quotes)."""
    if not tokens:
        return {}
    found = {}
    for key, (start, end) in value_spans(text).items():
        if text[start] == '"' and end - start >= 2:
            start, end = start + 1, end - 1
        found[key] = tokens_within(tokens, start, end)
    return found


def signals(
    answer: dict[str, Any],
    *,
    final: dict[str, Any],
    text: str,
    tokens: Sequence[TokenLogprob] | None,
    margins: dict[str, float],
    properties: dict[str, Any],
    reasked: dict[str, reask.View] | None = None,
    source: str = "",
) -> dict[str, Signals]:
    """The signals of every field of `final` (the answer after absence was decided).

    Args:
        answer: the model's answer as generated (its candidates).
        text: the raw text of that answer, which `tokens` spell.
        margins: per field the absence check weighed, log P(null) − log P(value).
        properties: the output schema's properties (names and descriptions).
        reasked: per field, the second view (`reask.py`).
        source: the input text the values come from.
    """
    per_field = field_tokens(text, tokens)
    values = [v for v in final.values() if isinstance(v, str) and v.strip()]
    free = bool(unclaimed(final, source)) if source else False
    found = {}
    for name, value in final.items():
        toks = per_field.get(name, [])
        lps = [max(t.logprob, FLOOR) for t in toks]
        gaps = [max(t.top_logprob - t.logprob, 0.0) for t in toks]
        shown = answer.get(name) if value is None else value
        view = (reasked or {}).get(name)
        found[name] = Signals(
            is_null=value is None,
            has_margin=name in margins,
            margin=margins.get(name, 0.0),
            lp_min=min(lps, default=0.0),
            lp_first=lps[0] if lps else 0.0,
            override=min(max(gaps, default=0.0), -FLOOR),
            n_tokens=len(toks),
            is_duplicate=isinstance(value, str) and values.count(value) > 1,
            wants_digits=wants_digits(name, properties.get(name)),
            has_digits=isinstance(shown, str) and any(c.isdigit() for c in shown),
            reask=view.margin if view else 0.0,
            unclaimed=free,
            rival=view.rival if view else None,
        )
    return found


def review(
    value: dict[str, Any],
    inputs: Any,
    schema: dict[str, Any],
    model: ChatModel,
    messages: list[Message],
    usage: Usage,
    *,
    kind: str,
    calibration: Calibration,
) -> Review:
    """`extract`'s and `fill_slots`' review: values inside a word weighed against the
    whole word (`spans.py`), absence decided for the nullable fields (`absence.py`),
    then each field's calibrated confidence, in `meta.fields`."""
    props = schema.get("properties", {})
    answer = spans.widen(value, inputs.text, messages=messages, model=model, usage=usage)
    if inputs.absence:
        answer = spans.rescue(
            answer,
            inputs.text,
            props,
            messages=messages,
            model=model,
            usage=usage,
            null_prior=absence.NULL_PRIOR,
        )
    fields = absence.nullable_fields(schema) if inputs.absence else []
    looked = absence.review(answer, fields, messages=messages, model=model, usage=usage)
    decided = looked.meta.get("absence", {})
    margins = {name: d["logprob_null"] - d["logprob_value"] for name, d in decided.items()}
    descriptions = getattr(inputs, "slots", None) or {
        n: p.get("description", "") if isinstance(p, dict) else "" for n, p in props.items()
    }
    reasked = reask.margins(
        looked.value, inputs.text, descriptions, model=model, usage=usage,
        asks_nulls=kind in reask.ASKS_NULLS, with_rivals=kind in reask.WEIGHS_RIVALS,
    )  # fmt: skip
    found = signals(
        answer,
        final=looked.value,
        text=usage.last_text,
        tokens=usage.last_tokens,
        margins=margins,
        properties=props,
        reasked=reasked,
        source=inputs.text,
    )
    per_field = {}
    for name, sig in found.items():
        sure = calibration.field_confidence(kind, sig.vector())
        per_field[name] = {
            "value": looked.value[name],
            "confidence": None if sure is None else round(sure, 4),
            "signals": sig.describe(),
        }
    known = [f["confidence"] for f in per_field.values() if f["confidence"] is not None]
    step = min(known) if len(known) == len(per_field) and known else looked.confidence
    return Review(value=looked.value, confidence=step, meta={**looked.meta, "fields": per_field})
