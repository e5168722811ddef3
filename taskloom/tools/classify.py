"""`classify`: pick one label, with a confidence from the token probabilities.

Each label is scored as the model's answer (`ChatModel.score`, the log-probability of
`{"label": ...}` after the prompt), so the label set is closed by construction and the
confidence never comes from asking the model how sure it is. The probabilities are
calibrated against content-free inputs (see `base.calibrated`), because a small model
otherwise leans towards one label (often the first) whatever the text. The label is
the most probable one, and the confidence its calibrated probability.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, StrictStr

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import ANSWER_CUE, CONTENT_FREE, KindInputs, Usage, calibrated


class Inputs(KindInputs):
    """Inputs of `classify`."""

    text: str = Field(description="the text to classify")
    labels: list[StrictStr] = Field(
        min_length=2, description="the labels to choose from (distinct strings)"
    )


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"enum": list(dict.fromkeys(inputs.labels))}},
        "required": ["label"],
    }


SHOW_SCHEMA = False


def instruction(inputs: Inputs) -> str:
    return "Classify the text. The label is one of: " + ", ".join(inputs.labels) + "."


def render(inputs: Inputs) -> str:
    return f"Text: {inputs.text}"


def answer(output: Any) -> Any:
    return {"label": output["label"]} if isinstance(output, dict) else output


def replies(labels: list[str]) -> list[str]:
    """Each label written as the model writes an answer (after the "Answer:" cue)."""
    return [" " + json.dumps({"label": label}, ensure_ascii=False) for label in labels]


def decide(inputs: Inputs, model: ChatModel, messages: list[Message], usage: Usage) -> Any:
    """The most probable label, with its calibrated probability as the confidence."""
    labels = list(dict.fromkeys(inputs.labels))
    empty: list[list[Message]] = [
        [messages[0], {"role": "user", "content": f"Text: {cf}\n{ANSWER_CUE}"}]
        for cf in CONTENT_FREE
    ]
    probs = calibrated(model, messages, empty, replies(labels), usage)
    best = max(range(len(labels)), key=probs.__getitem__)
    return {"label": labels[best], "confidence": round(probs[best], 4)}


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    return value
