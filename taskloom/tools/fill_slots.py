"""`fill_slots`: fill named slots from an utterance, reporting the ones it lacks.

The model answers with a flat object `{slot: value or null}` (easier for a small model
than the nested output shape); `finish` turns it into `{"slots": ..., "missing": [...]}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools import confidence
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    """Inputs of `fill_slots`."""

    text: str = Field(description="the utterance")
    slots: dict[str, str] = Field(min_length=1, description="slot name → what it holds")
    copy_spans: bool = Field(
        False, alias="copy", description="slot values must be verbatim spans of the text"
    )
    absence: bool = Field(
        True,
        description="the runtime decides whether each nullable slot is absent"
        " (docs/absence.md); false trusts the model's nulls",
    )


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    props = {name: {"type": ["string", "null"]} for name in inputs.slots}
    return {"type": "object", "properties": props, "required": list(props)}


SHOW_SCHEMA = False


def instruction(inputs: Inputs) -> str:
    described = "\n".join(f"- {name}: {what}" for name, what in inputs.slots.items())
    rule = " Copy each value exactly as the user wrote it." if inputs.copy_spans else ""
    return (
        "Fill the slots from the user's words. Use null for a slot the words do not mention."
        + rule
        + "\nSlots:\n"
        + described
    )


def render(inputs: Inputs) -> str:
    return f"Text: {inputs.text}"


def answer(output: Any) -> Any:
    if isinstance(output, dict) and isinstance(output.get("slots"), dict):
        return output["slots"]
    return output


def copy_text(inputs: Inputs) -> str | None:
    return inputs.text if inputs.copy_spans else None


review = confidence.review  # absence decided, then each slot's calibrated confidence


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    slots: dict[str, Any] = {}
    for name in inputs.slots:
        v = value.get(name)
        if isinstance(v, str) and (not v.strip() or (inputs.copy_spans and v not in inputs.text)):
            v = None
        slots[name] = v
    return {"slots": slots, "missing": [n for n, v in slots.items() if v is None]}
