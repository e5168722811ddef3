"""`generate`: a short text that follows an instruction, given some context.

The answer is `{"text": ...}` with `maxLength` set to twice `max_tokens` characters, so
the grammar closes the string before the token budget runs out: a small model rarely
stops by itself, and a cut-off JSON answer would fail validation.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    """Inputs of `generate`."""

    instruction: str = Field(description="what to write")
    context: Any = Field(None, description="any JSON the text should draw on")


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    text = {"type": "string", "maxLength": 2 * inputs.max_tokens}
    return {"type": "object", "properties": {"text": text}, "required": ["text"]}


SHOW_SCHEMA = False


def instruction(inputs: Inputs) -> str:
    return "Write what the instruction asks for, briefly, using the context."


def render(inputs: Inputs) -> str:
    context = "" if inputs.context is None else "\nContext:\n" + json.dumps(inputs.context)
    return f"Instruction: {inputs.instruction}{context}"


def answer(output: Any) -> Any:
    return output


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    return {"text": value["text"]}
