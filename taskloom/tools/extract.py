"""`extract`: pull the fields of a JSON schema out of a text."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.errors import TaskInputError
from taskloom.tools import confidence
from taskloom.tools.base import KindInputs


class Inputs(KindInputs):
    """Inputs of `extract`."""

    text: str = Field(description="the text to extract from")
    copy_spans: bool = Field(
        False, alias="copy", description="string values must be verbatim spans of the text"
    )
    absence: bool = Field(
        True,
        description="the runtime decides whether each nullable field is absent"
        " (docs/absence.md); false trusts the model's nulls",
    )


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    if output is None:
        raise TaskInputError("extract needs an 'output' JSON schema naming the fields")
    return output


def instruction(inputs: Inputs) -> str:
    rule = " Copy each value exactly as it is written in the text." if inputs.copy_spans else ""
    return (
        "Extract the fields from the text as JSON."
        " Use null for a field the text does not give." + rule
    )


def render(inputs: Inputs) -> str:
    return f"Text: {inputs.text}"


def answer(output: Any) -> Any:
    return output


def copy_text(inputs: Inputs) -> str | None:
    return inputs.text if inputs.copy_spans else None


review = confidence.review  # absence decided, then each field's calibrated confidence


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    if inputs.copy_spans and isinstance(value, dict):
        # The grammar already enforces spans; this guards models that can't constrain.
        return {
            k: (v if not isinstance(v, str) or v in inputs.text else None) for k, v in value.items()
        }
    return value
