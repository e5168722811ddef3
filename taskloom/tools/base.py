"""What every SLM kind shares: inputs, few-shot examples, prompts and the run loop.

A kind module defines `Inputs` (a pydantic model), `schema(inputs, output)` (the JSON
schema the model is constrained to), `instruction(inputs)` (the fixed task text) and
`finish(value, inputs, model, messages)` (turn the model's JSON into the kind's output)
and `answer(output)` (an example's output as the model should write it).
`run_kind` does the rest: prompt layout, constrained call, validation and re-asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskloom.chat import ChatModel, Completion, Message
from taskloom.errors import OutputValidationError, SchemaError, TaskInputError


class Example(BaseModel):
    """A few-shot pair: inputs like the step's, and the output the kind should give."""

    input: dict[str, Any] = Field(description="the same fields as the step's inputs")
    output: Any = Field(description="the output, in the kind's output shape")


class KindInputs(BaseModel):
    """Inputs every SLM kind accepts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    examples: list[Example] = Field(default_factory=list, description="few-shot examples")
    max_tokens: int = Field(256, ge=1, le=4096, description="the most tokens to generate")


@dataclass
class Usage:
    """Tokens and calls spent by one step, summed over re-asks."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    calls: int = 0
    raw_outputs: list[str] = field(default_factory=list)

    def add(self, c: Completion) -> None:
        self.model = c.model
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        evaluated = c.prompt_tokens_evaluated
        self.prompt_tokens_evaluated += c.prompt_tokens if evaluated is None else evaluated
        self.calls += 1
        self.raw_outputs.append(c.text)


@dataclass(frozen=True)
class Outcome:
    """A kind's output with what it cost."""

    value: Any
    usage: Usage


class Kind(Protocol):
    """The module interface of an SLM kind (see the module docstring)."""

    Inputs: type[KindInputs]

    def schema(self, inputs: Any, output: dict[str, Any] | None) -> dict[str, Any]: ...

    def instruction(self, inputs: Any) -> str: ...

    def render(self, inputs: Any) -> str: ...

    def answer(self, output: Any) -> Any: ...

    def finish(
        self, value: Any, inputs: Any, model: ChatModel, messages: list[Message]
    ) -> Any: ...


def parse_inputs(kind: Kind, name: str, raw: dict[str, Any]) -> Any:
    """Validate a step's inputs against its kind.

    Raises:
        TaskInputError: naming the field and what the kind expects.
    """
    try:
        return kind.Inputs.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "inputs"
        fields = ", ".join(kind.Inputs.model_fields)
        raise TaskInputError(
            f"{name} input {where}: {first['msg'].lower()} (inputs of {name}: {fields})"
        ) from None


def check_schema(schema: dict[str, Any]) -> None:
    """Raise SchemaError unless `schema` is valid JSON Schema."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"output schema is not valid JSON Schema: {e.message}") from None


def build_messages(kind: Kind, inputs: Any, schema: dict[str, Any]) -> list[Message]:
    """Instruction, schema and examples first (a shared prefix); the variable text last."""
    parts = [
        kind.instruction(inputs),
        "Answer with JSON matching this schema:\n" + json.dumps(schema, separators=(",", ":")),
    ]
    for ex in inputs.examples:
        shown = kind.render(kind.Inputs.model_validate(ex.input))
        parts.append(f"Example input:\n{shown}\nExample answer:\n{json.dumps(kind.answer(ex.output))}")
    return [
        {"role": "system", "content": "\n\n".join(parts)},
        {"role": "user", "content": kind.render(inputs)},
    ]


def run_kind(
    kind: Kind,
    name: str,
    raw_inputs: dict[str, Any],
    *,
    output: dict[str, Any] | None,
    model: ChatModel,
    output_retries: int = 2,
) -> Outcome:
    """Run one SLM step: validate inputs, call the model constrained, check the output.

    Raises:
        TaskInputError: the inputs don't fit the kind.
        SchemaError: the output schema is not valid.
        OutputValidationError: every attempt produced output that fails validation.
    """
    inputs = parse_inputs(kind, name, raw_inputs)
    schema = kind.schema(inputs, output)
    check_schema(schema)
    messages = build_messages(kind, inputs, schema)
    usage = Usage()
    problem = ""
    for attempt in range(output_retries + 1):
        completion = model.complete(
            messages,
            schema=schema,
            max_tokens=inputs.max_tokens,
            temperature=0.0 if attempt == 0 else 0.7,
        )
        usage.add(completion)
        try:
            value = json.loads(completion.text)
            jsonschema.validate(value, schema)
        except (json.JSONDecodeError, jsonschema.ValidationError) as e:
            problem = e.msg if isinstance(e, json.JSONDecodeError) else e.message
            continue
        return Outcome(value=kind.finish(value, inputs, model, messages), usage=usage)
    raise OutputValidationError(
        f"{name} output failed validation after {usage.calls} attempts: {problem}",
        raw_output=usage.raw_outputs[-1] if usage.raw_outputs else "",
    )
