"""The plan wire format (version 1): Plan, Step, references and validation.

A plan is data: a DAG of typed steps that can be saved, validated, edited and run
again without any LLM. docs/plan-format.md describes the format for users, and
`taskloom.schema` generates its JSON Schema from these models.
"""

from __future__ import annotations

import difflib
import heapq
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, Literal, TypeVar

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskloom.config import MAX_STEPS, QUEUE_NAME
from taskloom.errors import PlanValidationError, TaskInputError

STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ROOT = r"(?:input|[a-z][a-z0-9_]{0,63})"
_PATH = r"(?:\.[A-Za-z0-9_\-]+|\[\d+\])*"
_WHOLE_REF = re.compile(rf"^\$({_ROOT})({_PATH})$")
_INLINE_REF = re.compile(rf"\$\{{({_ROOT})({_PATH})\}}")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")
_M = TypeVar("_M", bound=BaseModel)


class StepKind(StrEnum):
    """What a step does."""

    EXTRACT = "extract"
    FILL_SLOTS = "fill_slots"
    FILTER = "filter"
    CLASSIFY = "classify"
    GENERATE = "generate"
    TOOL = "tool"
    LLM = "llm"


SLM_KINDS = frozenset(
    {StepKind.EXTRACT, StepKind.FILL_SLOTS, StepKind.FILTER, StepKind.CLASSIFY, StepKind.GENERATE}
)


class Step(BaseModel):
    """One typed step of a plan."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        description="unique id, matching ^[a-z][a-z0-9_]{0,63}$",
        json_schema_extra={"pattern": STEP_ID.pattern},
    )
    kind: str = Field(
        description="extract, fill_slots, filter, classify, generate, tool or llm",
        json_schema_extra={"enum": [k.value for k in StepKind]},
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="literal values, or references: $input.path, $step_id.path, ${ref} in text",
    )
    output: dict[str, Any] | None = Field(
        None, description="JSON schema of the output (required for extract)"
    )
    after: list[str] = Field(default_factory=list, description="extra dependencies, by step id")
    tool: str | None = Field(None, description="the registered Python tool (kind 'tool' only)")
    queue: str | None = Field(None, description="routing hint: the queue to run on")
    model: str | None = Field(None, description="routing hint: the model to run on")
    description: str | None = Field(None, description="what this step is for, for people")
    timeout_s: float | None = Field(
        None, gt=0, description="seconds one attempt may run; default Settings.step_timeout_s"
    )
    review: Literal["always", "uncertain", "never"] | None = Field(
        None,
        description="when a person reviews the value: always, uncertain (only a value the"
        " calibration did not accept) or never; default: the run's --review",
    )
    review_timeout_s: float | None = Field(
        None, gt=0, description="seconds a review may wait; default Settings.review_timeout_s"
    )

    def dependencies(self) -> list[str]:
        """Step ids this step waits for: those its inputs reference, then `after`."""
        seen = dict.fromkeys(r.root for r in references(self.inputs) if r.root != "input")
        seen.update(dict.fromkeys(self.after))
        return list(seen)


class Plan(BaseModel):
    """A validated DAG of steps. Build one with `load_plan` to get every check."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(1, description="wire format version")
    goal: str = Field("", description="what the plan is for")
    steps: list[Step] = Field(description="the steps, in any order")
    output: Any = Field(None, description="the run's result: any JSON, references resolved")

    def step(self, step_id: str) -> Step:
        """The step with this id."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise PlanValidationError([f"no step {step_id!r} in the plan"])

    def order(self) -> list[Step]:
        """The steps in a topological order; ties keep the order they were written in."""
        index = {s.id: i for i, s in enumerate(self.steps)}
        waiting = {s.id: len(set(s.dependencies())) for s in self.steps}
        dependents: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for s in self.steps:
            for d in set(s.dependencies()):
                dependents[d].append(s.id)
        ready = [index[sid] for sid, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        out: list[Step] = []
        while ready:
            s = self.steps[heapq.heappop(ready)]
            out.append(s)
            for d in dependents[s.id]:
                waiting[d] -= 1
                if waiting[d] == 0:
                    heapq.heappush(ready, index[d])
        return out

    def to_json(self) -> str:
        """The plan as wire-format JSON."""
        return self.model_dump_json(indent=2, exclude_none=True, exclude_defaults=False)


class Ref(BaseModel):
    """A parsed reference: `$root.path`, where root is `input` or a step id."""

    model_config = ConfigDict(frozen=True)

    root: str
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return (
            "$"
            + self.root
            + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        )


def _parse_path(text: str) -> tuple[str | int, ...]:
    return tuple(
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART.finditer(text)
    )


def parse_reference(text: str) -> Ref | None:
    """The reference a whole string stands for, or None if it is a literal."""
    m = _WHOLE_REF.match(text)
    return Ref(root=m.group(1), path=_parse_path(m.group(2))) if m else None


def references(value: Any) -> Iterator[Ref]:
    """Every reference inside a JSON value, whole-string and `${...}` alike."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return
        if ref := parse_reference(value):
            yield ref
            return
        for m in _INLINE_REF.finditer(value):
            yield Ref(root=m.group(1), path=_parse_path(m.group(2)))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def lookup(ref: Ref, *, inputs: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """The value a reference points at.

    Raises:
        TaskInputError: the step has no result yet, or the path is not in it.
    """
    if ref.root == "input":
        value: Any = inputs
    elif ref.root in results:
        value = results[ref.root]
    else:
        raise TaskInputError(f"reference {ref}: step {ref.root!r} has no result")
    for part in ref.path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError) as e:
            raise TaskInputError(
                f"reference {ref}: {part!r} is not in the value it points into; "
                "check the path against the output's shape"
            ) from e
    return value


def resolve(value: Any, *, inputs: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """Replace every reference in a JSON value by what it points at.

    A string that is exactly a reference becomes the value itself (any JSON type);
    `${ref}` inside a longer string becomes its text; `$$` at the start escapes a `$`.
    """
    if isinstance(value, str):
        if value.startswith("$$"):
            return value[1:]
        if ref := parse_reference(value):
            return lookup(ref, inputs=inputs, results=results)

        def text(m: re.Match[str]) -> str:
            found = lookup(
                Ref(root=m.group(1), path=_parse_path(m.group(2))), inputs=inputs, results=results
            )
            return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

        return _INLINE_REF.sub(text, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, inputs=inputs, results=results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, inputs=inputs, results=results) for v in value]
    return value


def load_plan(
    data: Any,
    *,
    source: str | None = None,
    max_steps: int = MAX_STEPS,
    inputs: Mapping[str, Any] | None = None,
) -> Plan:
    """Parse and validate a plan's wire format, reporting every problem at once.

    This checks what the plan module knows: the shape of the plan and of every step,
    ids, kinds, references, cycles and output schemas. `taskloom.load_plan` (in
    `taskloom.tools.checks`) also checks each kind's inputs.

    Args:
        data: the decoded JSON (a dict), or a Plan to re-check.
        source: where it came from (a file name), for the error message.
        max_steps: the step limit.
        inputs: the run's inputs; when given, `$input` references are checked too.

    Raises:
        PlanValidationError: with every problem, each naming its step.
    """
    plan, problems = plan_problems(data, max_steps=max_steps, inputs=inputs)
    if problems or plan is None:
        raise PlanValidationError(problems or ["plan: not a plan"], source=source)
    return plan


def plan_problems(
    data: Any, *, max_steps: int = MAX_STEPS, inputs: Mapping[str, Any] | None = None
) -> tuple[Plan | None, list[str]]:
    """Every problem with a plan's wire format, and the plan as far as it parses.

    A step whose shape is wrong is still checked as far as it can be (its unknown or
    ill-typed fields left out), so one mistake does not hide the others. The plan is
    None only when `data` is not an object.
    """
    if isinstance(data, Plan):
        data = data.model_dump()
    if not isinstance(data, dict):
        return None, [f"a plan is a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    top = {k: v for k, v in data.items() if k != "steps"}
    plan = _lenient(Plan, {**top, "steps": []}, "plan", problems)
    if plan is None:  # only the plan-level fields are wrong: check the steps anyway
        plan = Plan(steps=[], goal=top["goal"] if isinstance(top.get("goal"), str) else "")
    raw_steps = data.get("steps")
    if "steps" not in data:
        problems.append("plan: steps field required")
    elif not isinstance(raw_steps, list):
        problems.append("plan: steps input should be a valid list")
    else:
        for i, raw in enumerate(raw_steps):
            sid = raw.get("id") if isinstance(raw, dict) else None
            where = f"step {sid!r}" if isinstance(sid, str) else f"steps[{i}]"
            if (step := _lenient(Step, raw, where, problems)) is not None:
                plan.steps.append(step)
    problems.extend(validate(plan, max_steps=max_steps, inputs=inputs, has_steps="steps" in data))
    return plan, problems


def _lenient(model: type[_M], raw: Any, where: str, problems: list[str]) -> _M | None:
    """`raw` as a `model`, its problems added to `problems`; a field that is wrong is
    left out and the rest parsed again, so the other checks still see the object."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems.extend(_shape_problems(e, where, model))
        if not isinstance(raw, dict):
            return None
        wrong = {err["loc"][0] for err in e.errors() if err["loc"]}
        try:
            return model.model_validate({k: v for k, v in raw.items() if k not in wrong})
        except ValidationError:
            return None


def _shape_problems(error: ValidationError, where: str, model: type[BaseModel]) -> list[str]:
    problems = []
    for err in error.errors():
        loc = list(err["loc"])
        field = ".".join(str(p) for p in loc)
        msg = err["msg"].lower()
        if err["type"] == "extra_forbidden":
            near = did_you_mean(str(loc[-1]), model.model_fields) if len(loc) == 1 else ""
            problems.append(f"{where}: unknown field {field!r}{near or '; remove it'}")
            continue
        problems.append(f"{where}: {field + ' ' if field else ''}{msg}".replace("  ", " "))
    return problems


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the choice closest to `word`, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(
    plan: Plan,
    *,
    max_steps: int = MAX_STEPS,
    inputs: Mapping[str, Any] | None = None,
    has_steps: bool = True,
) -> list[str]:
    """Every problem with a parsed plan, each naming its step; empty when valid."""
    problems: list[str] = []
    if len(plan.steps) > max_steps:
        problems.append(f"plan: {len(plan.steps)} steps is more than the limit of {max_steps}")
    if not plan.steps and has_steps:
        problems.append("plan: no steps; add at least one")
    ids: set[str] = set()
    for s in plan.steps:
        if not STEP_ID.match(s.id):
            problems.append(f"step {s.id!r}: id must match ^[a-z][a-z0-9_]{{0,63}}$")
        if s.id == "input":
            problems.append("step 'input': 'input' is reserved for the run's inputs")
        if s.id in ids:
            problems.append(f"step {s.id!r}: duplicate id")
        ids.add(s.id)
    kinds = ", ".join(k.value for k in StepKind)
    for s in plan.steps:
        where = f"step {s.id!r}"
        if s.kind not in StepKind.__members__.values():
            near = did_you_mean(s.kind, [k.value for k in StepKind])
            problems.append(f"{where}: unknown kind {s.kind!r}{near} (expected one of: {kinds})")
        if s.kind == StepKind.TOOL and not s.tool:
            problems.append(f"{where}: kind 'tool' needs a 'tool' naming a registered tool")
        if s.queue is not None and not QUEUE_NAME.match(s.queue):
            problems.append(f"{where}: queue {s.queue!r} may use only letters, digits and _ . : -")
        if s.kind == StepKind.EXTRACT and s.output is None:
            problems.append(f"{where}: kind 'extract' needs an 'output' JSON schema")
        if s.output is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(s.output)
            except jsonschema.SchemaError as e:
                problems.append(f"{where}: output is not a valid JSON schema: {e.message}")
        for ref in references(s.inputs):
            problems.extend(_check_ref(ref, where, ids, inputs))
        for dep in s.after:
            if dep not in ids:
                near = did_you_mean(dep, ids)
                problems.append(f"{where}: 'after' names unknown step {dep!r}{near}")
    for ref in references(plan.output):
        problems.extend(_check_ref(ref, "plan output", ids, inputs))
    if cycle := find_cycle(plan):
        problems.append(f"step {cycle[0]!r}: cycle " + " → ".join(cycle))
    return problems


def _check_ref(ref: Ref, where: str, ids: set[str], inputs: Mapping[str, Any] | None) -> list[str]:
    if ref.root == "input":
        if inputs is None or not ref.path:
            return []
        try:
            lookup(ref, inputs=inputs, results={})
        except TaskInputError:
            near = did_you_mean(str(ref.path[0]), inputs) if ref.path[0] not in inputs else ""
            return [f"{where}: {ref} is not in the run's inputs{near}; pass it with --input"]
        return []
    if ref.root not in ids:
        near = did_you_mean(ref.root, ids)
        return [f"{where}: {ref} references unknown step {ref.root!r}{near}"]
    return []


def find_cycle(plan: Plan) -> list[str] | None:
    """One dependency cycle as a path that ends where it starts, or None."""
    deps = {s.id: s.dependencies() for s in plan.steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        state[sid] = 1
        path.append(sid)
        for d in deps.get(sid, []):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d in deps and d not in state and (found := visit(d)):
                return found
        path.pop()
        state[sid] = 2
        return None

    for s in plan.steps:
        if s.id not in state and (found := visit(s.id)):
            return found
    return None
