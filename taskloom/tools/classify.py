"""`classify`: pick one label, with a confidence from the token probabilities.

The label is generated under a grammar that allows only the labels. The confidence is
the softmax, across the labels, of each label's log-probability as the answer
(`ChatModel.score`), so it never comes from asking the model how sure it is.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, StrictStr

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import KindInputs, Usage, score, softmax


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


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    usage = Usage()
    probs = softmax(score(model, messages, replies(inputs.labels), usage))
    confidence = probs[inputs.labels.index(value["label"])]
    return {"label": value["label"], "confidence": round(confidence, 4)}
