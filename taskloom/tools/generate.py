"""`generate`: a short text that follows an instruction, given some context.

The answer is `{"text": ...}` with `maxLength` set to twice `max_tokens` characters, so
the grammar closes the string before the token budget runs out: a small model rarely
stops by itself, and a cut-off JSON answer would fail validation. A text the budget cut
is then trimmed to its last sentence end (`.`, `!` or `?`), so a reply never stops
mid-sentence or mid-word; one with no sentence end is cut at its last whole word.
`maxLength` is not enough on its own: a model that falls into one-character tokens
spends the token budget first, inside the string (as "order B-A-A-A-D-D-…" did, before
grounding stopped such runs). Such an answer is closed where it was cut and trimmed
the same way (`parse`), not re-asked: a re-ask samples warm, so the reply would change
from run to run.

The prompt casts the model as the one who writes (a support agent answering a
customer, by default), and one example shows a reply of a few sentences that greets
the person by name: a 270M model otherwise continues the customer's own message.

Grounded: every id, number or code in the text must come from the instruction or the
context (`taskloom.chat.grounding`). The model host enforces it while decoding; a text
from any other model that invents one is flagged (`accepted: false`, `meta.invented`).
So is a text with a quantity, date or duration its sources lack where grounding cannot
see it: a sentence of the sources restated with its "within 5 business days" as "the
same business day" or "one week" for "14 days", or "three months" where they say 30
days (`meta.changed`, `quantities.py`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.chat.grounding import GROUNDING_KEYWORD, Grounding
from taskloom.tools.base import KindInputs, Review, Usage
from taskloom.tools.quantities import changed_quantities, source_sentences, written_otherwise

SENTENCE_END = re.compile(r"[.!?](?=[\"')\]]*(\s|$))")
CUT_ANSWER = re.compile(
    r'\s*\{\s*"text"\s*:\s*"((?:[^"\\]|\\u[0-9a-fA-F]{4}|\\[^u])*)(?:\\u[0-9a-fA-F]{0,3}|\\)?'
)
"""An answer the token budget cut inside its text: the text's complete part, then any
partial escape."""
STUB = re.compile(r"\s?(?<![\w-])[A-Z]{1,4}[-_](?=[\s).,;:!?]|$)")
"""An id's capital letters and joiner with nothing after them: "B-" before " A-1042"."""
EMPTY_BRACKETS = re.compile(r"\s?\(\s*\)")


class Inputs(KindInputs):
    """Inputs of `generate`."""

    instruction: str = Field(description="what to write")
    context: Any = Field(None, description="any JSON the text should draw on")
    grounded: bool = Field(
        True,
        description="ids, numbers and codes in the text must come from the instruction or"
        " the context (docs/calibration.md); false lets the model write any",
    )


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    text = {"type": "string", "maxLength": 2 * inputs.max_tokens}
    shape = {"type": "object", "properties": {"text": text}, "required": ["text"]}
    return {**shape, GROUNDING_KEYWORD: source(inputs)} if inputs.grounded else shape


def source(inputs: Inputs) -> str:
    """What the text's ids and numbers may come from: the instruction and the context."""
    context = "" if inputs.context is None else json.dumps(inputs.context, ensure_ascii=False)
    return f"{inputs.instruction}\n{context}"


def review(
    value: dict[str, Any],
    inputs: Inputs,
    schema: dict[str, Any],
    model: ChatModel,
    messages: list[Message],
    usage: Usage,
    **_: Any,
) -> Review:
    """Ids and numbers the text has that its sources lack (none when the model host
    grounded the decoding; another chat model's are found here), and quantities, dates and
    durations that they do not support (`quantities.py`): either flags the step."""
    text = str(value.get("text", ""))
    sources = source_sentences(inputs.instruction, inputs.context)
    invented = [
        run
        for run in Grounding(source(inputs)).invented(text)
        if not written_otherwise(run, sources)
    ]
    changed = changed_quantities(text, sources)
    meta = {"invented": invented, "changed": changed, "accepted": not invented and not changed}
    return Review(value=value, meta=meta)


SHOW_SCHEMA = False

DEFAULT_EXAMPLES = [
    {
        "input": {
            "instruction": "Draft a short reply to Tom Baker",
            "context": [
                {"name": "Tom Baker", "order_id": "B-311"},
                ["Exchanges are free within 30 days."],
            ],
        },
        "output": {
            "text": "Dear Tom Baker, thank you for contacting us about order B-311."
            " Exchanges are free within 30 days, so we will send you a new one right away."
            " Kind regards, the support team."
        },
    }
]


def instruction(inputs: Inputs) -> str:
    return (
        "You are a support agent. Write what the instruction asks for, in a few short"
        " sentences, speaking to the person by name and using the context."
    )


def render(inputs: Inputs) -> str:
    context = "" if inputs.context is None else "\nContext:\n" + json.dumps(inputs.context)
    return f"Instruction: {inputs.instruction}{context}"


def answer(output: Any) -> Any:
    return output


def trim(text: str, *, is_cut: bool) -> str:
    """A text cut by its budget (`is_cut`) up to its last sentence end, or without one,
    less its last, perhaps partial, word. A text the model ended itself is kept whole."""
    text = text.strip()
    if not is_cut:
        return text
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    if ends:
        return text[: ends[-1]]
    if " " in text:
        return text.rsplit(None, 1)[0].rstrip(",;:-")
    return text


def parse(raw: str) -> Any:
    """The answer's JSON; one cut inside its text (module doc) is closed there and
    trimmed as a cut text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        cut = CUT_ANSWER.fullmatch(raw)
        if cut is None:
            raise
        return {"text": trim(json.loads(f'"{cut[1]}"'), is_cut=True)}


def unstubbed(text: str) -> str:
    """The text less the stubs grounding leaves: the letters of an id whose digits it
    turned down ("about refund B- A-1042", `chat.grounding.halts`), and brackets left empty."""
    return EMPTY_BRACKETS.sub("", STUB.sub("", text))


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    # A text the grammar closed at maxLength ends wherever the budget ran out.
    text = value["text"]
    text = trim(text, is_cut=len(text) >= 2 * inputs.max_tokens)
    return {"text": unstubbed(text) if inputs.grounded else text}
