"""`filter`: keep the passages relevant to a query, with a score each."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    query: str = Field(description="what the passages should be relevant to")
    passages: list[str] = Field(min_length=1, description="the passages to filter (not empty)")
    top_k: int | None = Field(None, ge=1, description="keep at most this many")


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    numbers = list(range(1, len(inputs.passages) + 1))
    return {
        "type": "object",
        "properties": {"relevant": {"type": "array", "items": {"enum": numbers}}},
        "required": ["relevant"],
    }


def instruction(inputs: Inputs) -> str:
    return "List the numbers of the passages that are relevant to the query."


def render(inputs: Inputs) -> str:
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(inputs.passages, 1))
    return f"Query: {inputs.query}\nPassages:\n{listed}"


def answer(output: Any) -> Any:
    return output


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    chosen = sorted(set(value["relevant"]))[: inputs.top_k]
    return {"kept": [inputs.passages[i - 1] for i in chosen], "scores": [1.0] * len(chosen)}
