"""`classify`: pick one label, with a confidence from the token probabilities."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    text: str = Field(description="the text to classify")
    labels: list[str] = Field(min_length=2, description="the labels to choose from (strings)")


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"enum": inputs.labels}},
        "required": ["label"],
    }


def instruction(inputs: Inputs) -> str:
    return "Classify the text. Choose exactly one of: " + ", ".join(inputs.labels) + "."


def render(inputs: Inputs) -> str:
    return f"Text:\n{inputs.text}"


def answer(output: Any) -> Any:
    return {"label": output["label"]} if isinstance(output, dict) else output


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    replies = [json.dumps({"label": label}) for label in inputs.labels]
    logprobs = model.score(messages, replies)
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    confidence = weights[inputs.labels.index(value["label"])] / sum(weights)
    return {"label": value["label"], "confidence": round(confidence, 4)}
