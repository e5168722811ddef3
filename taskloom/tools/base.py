"""What every SLM kind shares: inputs, few-shot examples, prompts and the run loop.

A kind module defines:
- `Inputs` (a pydantic model of the step's inputs);
- `schema(inputs, output)`: the JSON schema the model's answer is constrained to;
- `instruction(inputs)`: the fixed task text, placed first so the prefix is shared;
- `render(inputs)`: the variable part (the text), placed last;
- `answer(output)`: an example's output as the model should write it;
- `finish(value, inputs, model, messages)`: the kind's output from the model's JSON.

Optional: `SHOW_SCHEMA = False` to leave the schema out of the prompt, `copy_text(inputs)`
for copy-constrained strings, `DEFAULT_EXAMPLES` used when a step gives none,
`decide(inputs, model, messages, usage)` for kinds decided by scoring alone (no
generation), `review(value, inputs, schema, model, messages, usage)`, a `Review` of
the generated answer before `finish` (absence decided by the runtime, `absence.py`),
and `parse(raw)`, how the model's raw answer is read (default `json.loads`).
`run_kind` does the rest: prompt layout, constrained call, validation and re-asks.

The prompt is a few-shot document that reads well to base and chat models alike:
```
<instruction>                      ┐
<fields or schema>                 │ shared prefix: the same for every step
                                   │ with the same instruction and examples
<example input>                    │
Answer: <example output as JSON>   ┘
<input>                            ┐ variable
Answer:                            ┘
```
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskloom.calibration import Calibration, judge_meta, signature
from taskloom.chat import ChatModel, Completion, Message, TokenLogprob
from taskloom.chat.base import COPY_KEYWORD
from taskloom.errors import OutputValidationError, SchemaError, TaskInputError

ANSWER_CUE = "Answer:"


def with_copy(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """`schema` with its free-form strings constrained to verbatim spans of `text`."""
    return {**schema, COPY_KEYWORD: text}


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
    decodes: int = 0
    drafted: int = 0
    draft_accepted: int = 0
    raw_outputs: list[str] = field(default_factory=list)
    last_text: str = ""
    """The text of the last generation (not scoring), which `last_tokens` spell."""
    last_tokens: list[TokenLogprob] | None = None

    def add(self, c: Completion) -> None:
        """Count one model call."""
        self.model = c.model
        if c.completion_tokens or c.text:
            self.last_text, self.last_tokens = c.text, c.tokens
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        evaluated = c.prompt_tokens_evaluated
        self.prompt_tokens_evaluated += c.prompt_tokens if evaluated is None else evaluated
        self.calls += 1
        self.decodes += c.decodes or 0
        self.drafted += c.drafted or 0
        self.draft_accepted += c.draft_accepted or 0
        if c.text:
            self.raw_outputs.append(c.text)


@dataclass(frozen=True)
class Outcome:
    """A kind's output with what it cost, how sure the kind is, and why (`meta`)."""

    value: Any
    usage: Usage
    confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    accepted: bool | None = None
    """Whether the answer is accepted as right (None: the kind says nothing, e.g. a tool)."""


@dataclass(frozen=True)
class Review:
    """A kind's second look at the model's answer (see `absence`): the answer as
    decided, the confidence of the decisions, and their record for the step's `meta`."""

    value: Any
    confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Kind(Protocol):
    """The module interface of an SLM kind (see the module docstring)."""

    @property
    def Inputs(self) -> type[KindInputs]: ...  # a class; read-only so subclasses fit

    def schema(self, inputs: Any, output: dict[str, Any] | None) -> dict[str, Any]: ...

    def instruction(self, inputs: Any) -> str: ...

    def render(self, inputs: Any) -> str: ...

    def answer(self, output: Any) -> Any: ...

    def finish(self, value: Any, inputs: Any, model: ChatModel, messages: list[Message]) -> Any: ...


@runtime_checkable
class ScoresWithUsage(Protocol):
    """A chat model whose scoring also reports the tokens it spent (the model host)."""

    def score_usage(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> tuple[list[float], Completion]: ...


@runtime_checkable
class ScoresMany(Protocol):
    """A chat model that scores several prompts at once (the model host, batched)."""

    def score_many(
        self,
        calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
        *,
        prefixes: Sequence[str] | None = None,
    ) -> list[tuple[list[float], Completion]]: ...


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
        ) from e


def check_schema(schema: dict[str, Any], name: str) -> Any:
    """A validator for `schema`; SchemaError unless it is valid JSON Schema."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"{name} output schema is not valid JSON Schema: {e.message}") from e
    return cls(schema)


def describe_schema(schema: dict[str, Any]) -> str:
    """The schema as the model should read it: one line per field when it is flat."""
    props = schema.get("properties")
    if schema.get("type", "object") != "object" or not isinstance(props, dict):
        return "Answer with JSON matching this schema: " + json.dumps(schema)
    lines = ["Fields:"]
    for prop, sub in props.items():
        what = sub.get("description", "") if isinstance(sub, dict) else ""
        lines.append(f"- {prop}: {what}" if what else f"- {prop}")
    return "\n".join(lines)


def examples_of(kind: Kind, inputs: Any) -> list[Example]:
    """The step's examples, or the kind's defaults when it gives none."""
    if inputs.examples:
        return list(inputs.examples)
    return [Example.model_validate(e) for e in getattr(kind, "DEFAULT_EXAMPLES", [])]


def build_messages(kind: Kind, inputs: Any, schema: dict[str, Any]) -> list[Message]:
    """Instruction, schema and examples first (a shared prefix); the variable text last."""
    head = kind.instruction(inputs)
    if getattr(kind, "SHOW_SCHEMA", True):
        head += "\n" + describe_schema(schema)
    parts = [head]
    # An example's input inherits the step's other inputs (slots, labels, query...).
    base = inputs.model_dump(by_alias=True, exclude={"examples"})
    for ex in examples_of(kind, inputs):
        shown = kind.render(kind.Inputs.model_validate({**base, **ex.input}))
        answer = json.dumps(kind.answer(ex.output), ensure_ascii=False)
        parts.append(f"{shown}\n{ANSWER_CUE} {answer}")
    return [
        {"role": "system", "content": "\n\n".join(parts)},
        {"role": "user", "content": f"{kind.render(inputs)}\n{ANSWER_CUE}"},
    ]


def score(
    model: ChatModel, messages: Sequence[Message], continuations: Sequence[str], usage: Usage
) -> list[float]:
    """`model.score`, counting its tokens in `usage` when the model reports them."""
    if isinstance(model, ScoresWithUsage):
        scores, spent = model.score_usage(messages, continuations)
        usage.add(spent)
        return scores
    usage.model = usage.model or model.name
    return model.score(messages, continuations)


def score_all(
    model: ChatModel,
    calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
    usage: Usage,
    *,
    prefixes: Sequence[str] | None = None,
) -> list[list[float]]:
    """`score` for several prompts; a batching host scores them as parallel sequences.

    `prefixes`: per call, the start of the reply that comes before every continuation.
    The model host evaluates it once as part of the prompt; for any other model it is
    written in front of each continuation (the same log-probability differences).
    """
    if isinstance(model, ScoresMany):
        scored = model.score_many(calls, prefixes=prefixes)
        for _, spent in scored:
            usage.add(spent)
        return [scores for scores, _ in scored]
    if prefixes is not None:
        calls = [
            (messages, [prefix + c for c in continuations])
            for (messages, continuations), prefix in zip(calls, prefixes, strict=True)
        ]
    return [score(model, messages, continuations, usage) for messages, continuations in calls]


def softmax(logprobs: Sequence[float]) -> list[float]:
    """Normalise log-probabilities into probabilities that sum to 1."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


CONTENT_FREE = ("N/A", "")
"""Inputs with no content, used to measure a model's prior over the answers."""


def calibrated(
    model: ChatModel,
    messages: Sequence[Message],
    content_free: Sequence[Sequence[Message]],
    continuations: Sequence[str],
    usage: Usage,
) -> list[float]:
    """Probabilities of the continuations, corrected for the model's prior.

    Small models favour some answers whatever the input (the first label, "yes").
    Contextual calibration (Zhao et al., 2021, "Calibrate Before Use") divides each
    answer's probability by its average probability on content-free inputs, then
    renormalises.
    """
    calls = [(m, continuations) for m in [messages, *content_free]]
    probs, *priors = [softmax(s) for s in score_all(model, calls, usage)]
    mean = [sum(p[i] for p in priors) / len(priors) for i in range(len(continuations))]
    ratios = [p / max(m, 1e-9) for p, m in zip(probs, mean, strict=True)]
    total = sum(ratios)
    return [r / total for r in ratios]


def _call(
    model: ChatModel,
    name: str,
    messages: list[Message],
    *,
    schema: dict[str, Any],
    max_tokens: int,
    temperature: float,
) -> Completion:
    try:
        return model.complete(
            messages, schema=schema, max_tokens=max_tokens, temperature=temperature
        )
    except SchemaError as e:
        raise SchemaError(f"{name} output schema: {e.message}") from e
    except TaskInputError as e:
        raise TaskInputError(f"{name}: {e.message}") from e


def run_kind(
    kind: Kind,
    name: str,
    raw_inputs: dict[str, Any],
    *,
    output: dict[str, Any] | None,
    model: ChatModel,
    output_retries: int = 2,
    is_reviewed: bool = True,
    calibration: Calibration,
    output_model: type[BaseModel] | None = None,
) -> Outcome:
    """Run one SLM step: validate inputs, call the model constrained, check the output.

    `output_model`: the pydantic model the output schema came from; its validators run
    in the re-ask loop (`ask_until_valid`).

    With `is_reviewed` (the default) a kind with a `review` looks at the answer again
    (for `extract` and `fill_slots`: absence decided by the runtime, and each field's
    calibrated confidence). `calibration` maps confidences to probabilities of being
    right and says which are accepted (`Outcome.accepted`, and per field in
    `meta.fields`).

    Raises:
        TaskInputError: the inputs don't fit the kind, or the prompt doesn't fit the
            model's context window.
        SchemaError: the output schema is not valid, or the grammar compiler can't
            handle it.
        OutputValidationError: every attempt produced output that fails validation.
    """
    inputs = parse_inputs(kind, name, raw_inputs)
    schema = kind.schema(inputs, output)
    validator = check_schema(schema, name)
    messages = build_messages(kind, inputs, schema)
    usage = Usage()
    sig = signature(name, raw_inputs, output)
    decide = getattr(kind, "decide", None)
    if decide is not None:
        decided = decide(inputs, model, messages, usage)
        raw = decided.get("confidence") if isinstance(decided, dict) else None
        sure = calibration.step_confidence(name, raw if isinstance(raw, float) else None)
        if sure is not None and isinstance(decided, dict):
            decided = {**decided, "confidence": round(sure, 4)}
        meta: dict[str, Any] = {"raw_confidence": raw} if isinstance(raw, float) else {}
        if sure is not None:
            meta["threshold"] = calibration.threshold(name, sig)
        return Outcome(
            value=decided,
            usage=usage,
            confidence=sure,
            meta=meta,
            accepted=calibration.is_accepted(name, sure, sig),
        )
    copy_text = getattr(kind, "copy_text", None)
    text = copy_text(inputs) if copy_text is not None else None
    value = ask_until_valid(
        model,
        name,
        messages,
        constraint=with_copy(schema, text) if text is not None else schema,
        validator=validator,
        max_tokens=inputs.max_tokens,
        output_retries=output_retries,
        usage=usage,
        output_model=output_model,
        parse=getattr(kind, "parse", json.loads),
    )
    review = getattr(kind, "review", None) if is_reviewed else None
    looked = (
        review(value, inputs, schema, model, messages, usage, kind=name, calibration=calibration)
        if review is not None and isinstance(value, dict)
        else Review(value=value)
    )
    meta, accepted = accept(looked, name, sig, calibration)
    return Outcome(
        value=kind.finish(looked.value, inputs, model, messages),
        usage=usage,
        confidence=looked.confidence,
        meta=meta,
        accepted=accepted,
    )


def accept(
    looked: Review, kind: str, sig: str, calibration: Calibration
) -> tuple[dict[str, Any], bool | None]:
    """Each field (`meta.fields`) and the step accepted or flagged by the calibration's
    threshold for this kind and signature (`calibration.judge_meta`). A kind that states
    no confidence (`generate`) is judged by its review's `accepted` in `meta`, if any."""
    meta, accepted = judge_meta(looked.meta, looked.confidence, calibration.threshold(kind, sig))
    if accepted is None:
        said = looked.meta.get("accepted")
        return looked.meta, said if isinstance(said, bool) else None
    return meta, accepted


def ask_until_valid(
    model: ChatModel,
    name: str,
    messages: list[Message],
    *,
    constraint: dict[str, Any],
    validator: Any,
    max_tokens: int,
    output_retries: int,
    usage: Usage,
    parse: Callable[[str], Any] = json.loads,
    output_model: type[BaseModel] | None = None,
) -> Any:
    """Ask for output that passes `validator`; re-ask (warmer) up to `output_retries` times.

    With `output_model`, an answer that fits the schema must also pass the model's own
    validation (its `field_validator`s and `model_validator`s, as instructor does): when
    it fails, the answer and the validators' messages go back to the model, which is
    asked again. The value returned is the model's, dumped to JSON.

    Raises:
        OutputValidationError: every attempt failed validation (carries the last output).
    """
    problem = ""
    asked = list(messages)
    for attempt in range(output_retries + 1):
        completion = _call(
            model,
            name,
            asked,
            schema=constraint,
            max_tokens=max_tokens,
            temperature=0.0 if attempt == 0 else 0.7,
        )
        usage.add(completion)
        try:
            value = parse(completion.text)
            validator.validate(value)
        except (json.JSONDecodeError, jsonschema.ValidationError) as e:
            problem = e.msg if isinstance(e, json.JSONDecodeError) else e.message
            continue
        if output_model is None:
            return value
        try:
            return output_model.model_validate(value).model_dump(mode="json")
        except ValidationError as e:
            problem = validation_messages(e)
            asked = [*messages, *reask_messages(completion.text, problem)]
    raise OutputValidationError(
        f"{name} output failed validation after {usage.calls} attempts: {problem}",
        raw_output=usage.raw_outputs[-1] if usage.raw_outputs else "",
    )


def validation_messages(error: ValidationError) -> str:
    """A pydantic error's messages, one clause per problem: `field: message`."""
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def reask_messages(answer: str, problem: str) -> list[Message]:
    """The turn that sends a rejected answer back with why it was rejected."""
    return [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"That answer is not valid: {problem}. Answer again, fixed."},
    ]
