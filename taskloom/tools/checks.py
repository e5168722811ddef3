"""A plan checked whole: the wire format (`taskloom.plan`) and each kind's inputs.

Each SLM step's inputs are checked against its kind's `Inputs` model: missing required
inputs, unknown inputs (with "did you mean"), and wrong literal types. A reference's
value is checked too where its type is known before the run: from a step's output
(the kind's output shape, or the `output` schema of `extract` and `llm`), or from the
run's inputs when they are given. A reference whose type is not known (a tool's result,
a free-form object) is left to the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from taskloom.config import MAX_STEPS
from taskloom.errors import PlanValidationError
from taskloom.plan import (
    Plan,
    Ref,
    Step,
    StepKind,
    did_you_mean,
    parse_reference,
    plan_problems,
    references,
)
from taskloom.tools import KINDS
from taskloom.tools.base import Kind

_STRING = {"type": "string"}
_NUMBER = {"type": "number"}
_OUTPUTS: dict[str, dict[str, Any]] = {
    StepKind.CLASSIFY: {"label": _STRING, "confidence": _NUMBER},
    StepKind.GENERATE: {"text": _STRING},
    StepKind.FILTER: {
        "kept": {"type": "array", "items": _STRING},
        "scores": {"type": "array", "items": _NUMBER},
    },
    StepKind.FILL_SLOTS: {
        "slots": {"type": "object"},
        "missing": {"type": "array", "items": _STRING},
    },
}


class _Unknown:
    """A value whose type is not known before the run."""


UNKNOWN = _Unknown()


def load_plan(
    data: Any,
    *,
    source: str | None = None,
    max_steps: int = MAX_STEPS,
    inputs: Mapping[str, Any] | None = None,
) -> Plan:
    """Parse and validate a plan, reporting every problem at once.

    Checks the plan's shape and every step's (unknown fields, with "did you mean"),
    ids, kinds, references, cycles, output schemas and the step limit, then each SLM
    step's inputs against its kind: missing and unknown inputs, wrong literal types,
    and the type of a referenced value where it is known.

    Args:
        data: the decoded JSON (a dict), or a Plan to re-check.
        source: where it came from (a file name), for the error message.
        max_steps: the step limit.
        inputs: the run's inputs; when given, `$input` references are checked too.

    Raises:
        PlanValidationError: with every problem, each naming its step.
    """
    plan, problems = plan_problems(data, max_steps=max_steps, inputs=inputs)
    if plan is not None:
        problems.extend(kind_problems(plan, inputs=inputs))
    if problems or plan is None:
        raise PlanValidationError(_by_step(problems, plan), source=source)
    return plan


def _by_step(problems: list[str], plan: Plan | None) -> list[str]:
    """The problems in the plan's order: the plan's own first, then step by step."""
    if not problems:
        return ["plan: not a plan"]
    order = {f"step {s.id!r}:": i for i, s in enumerate(plan.steps if plan else [])}
    return sorted(problems, key=lambda p: order.get(p.split(": ", 1)[0] + ":", -1))


def kind_problems(plan: Plan, *, inputs: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem with the SLM steps' inputs, each naming its step."""
    steps = {s.id: s for s in plan.steps}
    problems: list[str] = []
    for step in plan.steps:
        kind = KINDS.get(step.kind)
        if kind is not None:
            problems.extend(_step_problems(step, kind, steps, inputs))
    return problems


def _step_problems(
    step: Step, kind: Kind, steps: Mapping[str, Step], inputs: Mapping[str, Any] | None
) -> list[str]:
    where = f"step {step.id!r}"
    values: dict[str, Any] = {}
    unknown_type: set[str] = set()
    path_problems: list[str] = []
    for name, raw in step.inputs.items():
        values[name] = _substitute(raw, steps, inputs, where, path_problems)
        if _has_unknown(values[name]):
            unknown_type.add(name)
    names = _input_names(kind)
    problems = list(path_problems)
    try:
        kind.Inputs.model_validate(values)
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            if field in unknown_type and err["type"] != "extra_forbidden":
                continue  # its type is known only when the run has it
            problems.append(_describe(err, step, field, names))
    return problems


def _describe(err: Any, step: Step, field: str, names: list[str]) -> str:
    where = f"step {step.id!r}"
    accepted = f"inputs of {step.kind}: {', '.join(names)}"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown input {field!r}{did_you_mean(field, names)} ({accepted})"
    if err["type"] == "missing":
        return f"{where}: kind {step.kind!r} needs input {field!r} ({accepted})"
    loc = ".".join(str(p) for p in err["loc"])
    raw = step.inputs.get(field)
    ref = parse_reference(raw) if isinstance(raw, str) else None
    got = f" ({ref} is {_type_name(err['input'])})" if ref else ""
    return f"{where}: input {loc}: {err['msg'].lower()}{got}"


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _input_names(kind: Kind) -> list[str]:
    fields = sorted(kind.Inputs.model_fields.items(), key=lambda f: not f[1].is_required())
    return [f.alias or name for name, f in fields]


def _substitute(
    value: Any,
    steps: Mapping[str, Step],
    inputs: Mapping[str, Any] | None,
    where: str,
    problems: list[str],
) -> Any:
    """`value` with each whole reference replaced by a value of the referenced type
    (UNKNOWN where that is not known), and `${ref}` text left as text."""
    if isinstance(value, str):
        ref = None if value.startswith("$$") else parse_reference(value)
        if ref is not None:
            return _referenced(ref, steps, inputs, where, problems)
        for inline in references(value):  # `${ref}` becomes text: only its path is checked
            _referenced(inline, steps, inputs, where, problems)
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, steps, inputs, where, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, steps, inputs, where, problems) for v in value]
    return value


def _referenced(
    ref: Ref,
    steps: Mapping[str, Step],
    inputs: Mapping[str, Any] | None,
    where: str,
    problems: list[str],
) -> Any:
    if ref.root == "input":
        if inputs is None:
            return UNKNOWN
        value: Any = inputs
        for part in ref.path:  # a path not in the inputs is reported by the plan checks
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return UNKNOWN
        return value
    step = steps.get(ref.root)
    if step is None:  # reported by the plan checks
        return UNKNOWN
    schema = _output_schema(step)
    for i, part in enumerate(ref.path):
        if schema is None:
            return UNKNOWN
        props = schema.get("properties")
        if isinstance(part, str) and isinstance(props, dict):
            if part not in props:
                near = did_you_mean(part, props)
                prefix = Ref(root=ref.root, path=ref.path[:i])
                problems.append(
                    f"{where}: {ref}: {prefix} has no field {part!r}{near}"
                    f" (fields: {', '.join(props)})"
                )
                return UNKNOWN
            schema = props[part] if isinstance(props[part], dict) else None
        elif isinstance(part, int) and schema.get("type") == "array":
            items = schema.get("items")
            schema = items if isinstance(items, dict) else None
        else:
            return UNKNOWN
    return UNKNOWN if schema is None else _sample(schema)


def _output_schema(step: Step) -> dict[str, Any] | None:
    if step.kind in _OUTPUTS:
        return {"type": "object", "properties": _OUTPUTS[step.kind]}
    if step.kind in (StepKind.EXTRACT, StepKind.LLM):
        return step.output
    return None


def _sample(schema: dict[str, Any]) -> Any:
    """A value of the type `schema` describes, or UNKNOWN when it leaves that open."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    types = schema.get("type")
    if isinstance(types, list):  # nullable: check the value as if present
        types = next((t for t in types if t != "null"), "null")
    if types == "object" and isinstance(schema.get("properties"), dict):
        return {k: _sample(v) for k, v in schema["properties"].items() if isinstance(v, dict)}
    if types == "array":
        items = schema.get("items")
        return [_sample(items)] if isinstance(items, dict) else UNKNOWN
    samples = {"string": "", "integer": 0, "number": 0.5, "boolean": False, "null": None}
    return samples.get(types, UNKNOWN) if isinstance(types, str) else UNKNOWN


def _has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False
