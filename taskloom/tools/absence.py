"""Absence decided by the runtime: "not in the text" weighed against the model's value.

A small model asked for JSON with nullable fields rarely writes `null`: under a copy
constraint it copies *some* span instead ("Peter" as the company, the order number as
the phone). So for every nullable field, after the constrained answer is generated,
the runtime scores two continuations of the answer at that field's position, teacher
forced, without the grammar:

    {"name": "Maria Lopez", "phone": null            (the field is absent)
    {"name": "Maria Lopez", "phone": "A-1042"        (the model's candidate)

The prefix is the answer as generated up to the field. Without the grammar the model
can say how much it believes the candidate: a span it was forced to copy because it
wanted to write something else scores low. The decision is

    p_absent = sigmoid(log P(null) - log P(candidate) + NULL_PRIOR)

`NULL_PRIOR` was tuned on the dev halves of the evaluation sets
(benchmarks/data/eval_*.json, see docs/absence.md); dividing the candidate's
log-likelihood by a power of its length did no better there. A field the model
already left null is checked too: null against the opening quote of a string, which is
the model's own probability that a value starts.

Every field's check is one scoring request, and all of a step's requests go to the
model at once (`score_all`): parallel sequences on a batching host, branches of one
decode on a sequential one. The answer up to the field joins the prompt (`prefixes`),
so each request shares the cached prompt and evaluates only the answer's new tokens,
then a few tokens for `null` and the candidate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import Review, Usage, score_all

NULL_PRIOR = -5.0
"""Nats added to the log-likelihood of null before it is weighed (tuned on the dev
halves: the model finds `null` likely after almost any field name, so a candidate
must be only e^5 times less likely than null to stand)."""


@dataclass(frozen=True)
class Decision:
    """What the runtime decided for one nullable field."""

    field: str
    is_present: bool
    confidence: float  # the probability of the decision taken, 0.5..1
    candidate: Any  # the model's value before the decision (None: it wrote null)
    logprob_null: float
    logprob_value: float

    def describe(self) -> dict[str, Any]:
        """The decision as the step's metadata shows it."""
        return {
            "decision": "present" if self.is_present else "absent",
            "confidence": round(self.confidence, 4),
            "candidate": self.candidate,
            "logprob_null": round(self.logprob_null, 3),
            "logprob_value": round(self.logprob_value, 3),
        }


def is_nullable(schema: Any) -> bool:
    """Whether a property's schema admits null (in `type` or in an `anyOf`/`oneOf`)."""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    alternatives = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(is_nullable(a) for a in alternatives)


def nullable_fields(schema: dict[str, Any]) -> list[str]:
    """The top-level properties of an object schema that may be null."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return []
    return [name for name, sub in props.items() if is_nullable(sub)]


def answer_prefix(value: dict[str, Any], field: str) -> str:
    """The answer as written up to `field`'s value (as the examples show JSON)."""
    parts = []
    for key, v in value.items():
        if key == field:
            break
        parts.append(f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}")
    head = ", ".join(parts)
    return " {" + head + (", " if head else "") + json.dumps(field, ensure_ascii=False) + ":"


def p_absent(
    logprob_null: float, logprob_value: float, candidate: Any, *, prior: float = NULL_PRIOR
) -> float:
    """The probability that the field is absent, from the two scores (module doc);
    `prior` other than NULL_PRIOR only to replay the decision (tune_null_prior.py).

    Two equal scores are no evidence either way (a model that scores everything alike,
    such as the scripted fake): 0.5, and the model's own answer stands.
    """
    if logprob_null == logprob_value:
        return 0.5
    margin = logprob_null - logprob_value
    if candidate is not None:  # (a null is weighed against the start of any string)
        margin += prior
    return 1 / (1 + math.exp(-max(min(margin, 50.0), -50.0)))


def weigh(
    value: dict[str, Any],
    fields: Sequence[str],
    *,
    messages: Sequence[Message],
    model: ChatModel,
    usage: Usage,
) -> list[Decision]:
    """Decide, for each of `fields` in the model's answer, absent or present."""
    checked = [f for f in fields if f in value and not isinstance(value[f], dict | list)]
    calls, prefixes = [], []
    for field in checked:
        candidate = value[field]
        shown = ' "' if candidate is None else " " + json.dumps(candidate, ensure_ascii=False)
        calls.append((messages, [" null", shown]))
        prefixes.append(answer_prefix(value, field))
    scored = score_all(model, calls, usage, prefixes=prefixes)
    decisions = []
    for field, (null, written) in zip(checked, scored, strict=True):
        p = p_absent(null, written, value[field])
        # A null the model wrote stays null; a low p_absent only lowers its confidence.
        is_present = value[field] is not None and p <= 0.5
        decisions.append(
            Decision(
                field=field,
                is_present=is_present,
                confidence=1 - p if is_present else p,
                candidate=value[field],
                logprob_null=null,
                logprob_value=written,
            )
        )
    return decisions


def apply(value: dict[str, Any], decisions: Sequence[Decision]) -> dict[str, Any]:
    """The answer with every field decided absent set to null."""
    absent = {d.field for d in decisions if not d.is_present}
    return {k: (None if k in absent else v) for k, v in value.items()}


def confidence(decisions: Sequence[Decision]) -> float | None:
    """A step's confidence: that of its least certain decision (None with none)."""
    least = min((d.confidence for d in decisions), default=None)
    return None if least is None else round(least, 4)


def review(
    value: dict[str, Any],
    fields: Sequence[str],
    *,
    messages: Sequence[Message],
    model: ChatModel,
    usage: Usage,
) -> Review:
    """The answer with absence decided for `fields`, its confidence and the decisions."""
    if not fields:
        return Review(value=value)
    decisions = weigh(value, fields, messages=messages, model=model, usage=usage)
    return Review(
        value=apply(value, decisions),
        confidence=confidence(decisions),
        meta={"absence": {d.field: d.describe() for d in decisions}},
    )
