"""`fill_slots`: fill named slots from an utterance, reporting the ones it lacks."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    text: str = Field(description="the utterance")
    slots: dict[str, str] = Field(min_length=1, description="slot name → what it holds")
    copy_spans: bool = Field(
        False, alias="copy", description="slot values must be verbatim spans of the text"
    )


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    props = {name: {"type": ["string", "null"]} for name in inputs.slots}
    slots = {"type": "object", "properties": props, "required": list(props)}
    return {"type": "object", "properties": {"slots": slots}, "required": ["slots"]}


def instruction(inputs: Inputs) -> str:
    described = "\n".join(f"- {name}: {what}" for name, what in inputs.slots.items())
    rule = " Copy each value exactly as written." if inputs.copy_spans else ""
    return (
        "Fill these slots from the user's words. Use null when the words do not say it."
        + rule
        + "\n"
        + described
    )


def render(inputs: Inputs) -> str:
    return f"Text:\n{inputs.text}"


def answer(output: Any) -> Any:
    return {"slots": output.get("slots", {})} if isinstance(output, dict) else output


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    slots: dict[str, Any] = {}
    for name in inputs.slots:
        v = value["slots"].get(name)
        if isinstance(v, str) and (not v.strip() or (inputs.copy_spans and v not in inputs.text)):
            v = None
        slots[name] = v
    return {"slots": slots, "missing": [n for n, v in slots.items() if v is None]}
