"""The plan wire format: parsing, references, validation, ordering."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from taskloom.errors import PlanValidationError, TaskInputError
from taskloom.plan import Ref, find_cycle, load_plan, parse_reference, references, resolve

EXAMPLE = json.loads((Path(__file__).parent.parent / "examples" / "triage.json").read_text())


def plan_with(*steps: dict[str, Any], output: Any = None) -> dict[str, Any]:
    return {"version": 1, "goal": "g", "steps": list(steps), "output": output}


def problems_of(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(PlanValidationError) as e:
        load_plan(data, **kwargs)
    return e.value.problems


def test_design_example_is_valid_and_ordered() -> None:
    plan = load_plan(EXAMPLE)
    assert [s.id for s in plan.order()] == ["contact", "intent", "booking", "docs", "reply"]
    assert plan.step("reply").dependencies() == ["contact", "docs", "booking"]


def test_references_parse_paths_and_inline_forms() -> None:
    assert parse_reference("$input.kb[2].text") == Ref(root="input", path=("kb", 2, "text"))
    assert parse_reference("$docs") == Ref(root="docs")
    assert parse_reference("$5 off") is None
    assert parse_reference("$$docs") is None
    found = list(references({"a": "Hi ${contact.name}, re ${input.subject}", "b": ["$x[0]"]}))
    assert [str(r) for r in found] == ["$contact.name", "$input.subject", "$x[0]"]


def test_resolve_whole_inline_escaped_and_nested() -> None:
    inputs = {"email": "hello", "kb": ["a", "b"]}
    results = {"contact": {"name": "Ada", "tags": ["x"]}}
    value = {
        "whole": "$contact",
        "inline": "Dear ${contact.name}: ${contact.tags}",
        "escaped": "$$contact",
        "nested": ["$input.kb[1]", {"k": "$input.email"}],
        "number": 3,
    }
    assert resolve(value, inputs=inputs, results=results) == {
        "whole": {"name": "Ada", "tags": ["x"]},
        "inline": 'Dear Ada: ["x"]',
        "escaped": "$contact",
        "nested": ["b", {"k": "hello"}],
        "number": 3,
    }


def test_resolve_missing_path_names_the_reference() -> None:
    with pytest.raises(TaskInputError, match=r"\$contact.phone"):
        resolve("$contact.phone", inputs={}, results={"contact": {"name": "Ada"}})


def test_every_problem_is_reported_at_once_each_naming_its_step() -> None:
    data = plan_with(
        {"id": "a", "kind": "summarize", "inputs": {}},
        {"id": "a", "kind": "generate", "inputs": {"instruction": "$ghost.text"}},
        {"id": "Bad-Id", "kind": "classify", "inputs": {"text": "x", "labels": ["p", "q"]}},
        {"id": "e", "kind": "extract", "inputs": {"text": "x"}, "output": {"type": "nope"}},
        {"id": "t", "kind": "tool", "inputs": {}, "after": ["missing"]},
    )
    problems = problems_of(data)
    joined = "\n".join(problems)
    assert "step 'a': unknown kind 'summarize'" in joined
    assert "step 'a': duplicate id" in joined
    assert "step 'a': $ghost.text references unknown step 'ghost'" in joined
    assert "step 'Bad-Id': id must match" in joined
    assert "step 'e': output is not a valid JSON schema" in joined
    assert "step 't': kind 'tool' needs a 'tool'" in joined
    assert "step 't': 'after' names unknown step 'missing'" in joined
    assert len(problems) == 7


def test_cycle_is_reported_with_its_path() -> None:
    data = plan_with(
        {"id": "a", "kind": "generate", "inputs": {"instruction": "$c.text"}},
        {"id": "b", "kind": "generate", "inputs": {"instruction": "$a.text"}},
        {"id": "c", "kind": "generate", "inputs": {"instruction": "x"}, "after": ["b"]},
    )
    assert problems_of(data) == ["step 'a': cycle a → c → b → a"]
    assert find_cycle(load_plan(plan_with(data["steps"][1] | {"inputs": {}}))) is None


def test_self_reference_is_a_cycle() -> None:
    data = plan_with({"id": "a", "kind": "generate", "inputs": {"instruction": "$a.text"}})
    assert problems_of(data) == ["step 'a': cycle a → a"]


def test_step_limit() -> None:
    steps = [{"id": f"s{i}", "kind": "generate", "inputs": {"instruction": "x"}} for i in range(5)]
    assert problems_of(plan_with(*steps), max_steps=4) == [
        "plan: 5 steps is more than the limit of 4"
    ]


def test_missing_input_reference_is_checked_when_inputs_are_given() -> None:
    data = copy.deepcopy(EXAMPLE)
    load_plan(data)  # without inputs, $input paths can't be checked
    problems = problems_of(data, inputs={"email": "hi"})
    assert problems == ["step 'docs': $input.kb is not in the run's inputs; pass it with --input"]


def test_shape_errors_name_the_step_and_field() -> None:
    data = plan_with({"id": "a", "kind": "generate", "inputs": "oops", "outptu": {}})
    problems = problems_of(data)
    assert "step 'a': inputs input should be a valid dictionary" in problems
    assert "step 'a': unknown field 'outptu' (did you mean 'output'?)" in problems
    assert problems_of([1, 2]) == ["a plan is a JSON object, got list"]
    assert problems_of({"version": 2, "steps": []})[0].startswith("plan: version")


def test_plan_round_trips_through_json() -> None:
    plan = load_plan(EXAMPLE)
    assert load_plan(json.loads(plan.to_json())) == plan


def test_queue_names_are_checked_where_the_plan_is_validated() -> None:
    data = plan_with({"id": "a", "kind": "generate", "queue": "slm\r\nFLUSHALL", "inputs": {}})
    assert problems_of(data) == [
        "step 'a': queue 'slm\\r\\nFLUSHALL' may use only letters, digits and _ . : -"
    ]
