"""A plan checked whole (`taskloom.load_plan`): every layer in one pass, each kind's
inputs against its model, referenced types where known, and "did you mean"."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import load_plan
from taskloom.errors import PlanValidationError


def plan_with(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "goal": "g", "steps": list(steps)}


def problems_of(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(PlanValidationError) as e:
        load_plan(data, **kwargs)
    return e.value.problems


def gen(sid: str, instruction: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "kind": "generate", "inputs": {"instruction": instruction}, **extra}


def test_five_mistakes_in_five_layers_give_five_problems() -> None:
    data = plan_with(
        gen("a", descripton="a typo in a field name"),  # structure
        {"id": "b", "kind": "classfy", "inputs": {"text": "t", "labels": ["x", "y"]}},  # kind
        gen("c", "$feilds.x"),  # reference
        gen("d", after=["e"]),  # cycle
        gen("e", after=["d"]),
        {"id": "f", "kind": "extract", "inputs": {"text": "t"}, "output": {"type": "nonsense"}},
    )
    assert problems_of(data) == [
        "step 'a': unknown field 'descripton' (did you mean 'description'?)",
        "step 'b': unknown kind 'classfy' (did you mean 'classify'?)"
        " (expected one of: extract, fill_slots, filter, classify, generate, tool, llm)",
        "step 'c': $feilds.x references unknown step 'feilds'",
        "step 'd': cycle d → e → d",
        "step 'f': output is not a valid JSON schema:"
        " 'nonsense' is not valid under any of the given schemas",
    ]


def test_a_kinds_inputs_are_checked_against_its_model() -> None:
    data = plan_with({"id": "a", "kind": "classify", "inputs": {"txt": "t", "labels": "x, y"}})
    assert problems_of(data) == [
        "step 'a': kind 'classify' needs input 'text'"
        " (inputs of classify: text, labels, examples, max_tokens)",
        "step 'a': input labels: input should be a valid list",
        "step 'a': unknown input 'txt' (did you mean 'text'?)"
        " (inputs of classify: text, labels, examples, max_tokens)",
    ]


def test_an_unknown_input_is_reported_even_when_its_value_is_a_reference() -> None:
    data = plan_with({"id": "a", "kind": "generate", "inputs": {"instrucion": "$input.x"}})
    problems = problems_of(data)
    assert any("unknown input 'instrucion' (did you mean 'instruction'?)" in p for p in problems)


def test_a_referenced_steps_output_type_is_checked() -> None:
    data = plan_with(
        {"id": "a", "kind": "classify", "inputs": {"text": "t", "labels": ["x", "y"]}},
        {"id": "b", "kind": "filter", "inputs": {"query": "$a.confidence", "passages": "$a.label"}},
        gen("c", "$a.lable"),
    )
    assert problems_of(data) == [
        "step 'b': input query: input should be a valid string ($a.confidence is a number)",
        "step 'b': input passages: input should be a valid list ($a.label is a string)",
        "step 'c': $a.lable: $a has no field 'lable' (did you mean 'label'?)"
        " (fields: label, confidence)",
    ]


def test_an_extract_schema_types_its_references() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "name": {"type": "string"}},
    }
    good = plan_with(
        {"id": "a", "kind": "extract", "inputs": {"text": "t"}, "output": schema},
        gen("b", "$a.name"),
    )
    assert load_plan(good).step("b").inputs == {"instruction": "$a.name"}
    bad = plan_with(
        {"id": "a", "kind": "extract", "inputs": {"text": "t"}, "output": schema},
        gen("b", "$a.n"),
    )
    assert problems_of(bad) == [
        "step 'b': input instruction: input should be a valid string ($a.n is an integer)"
    ]


def test_run_inputs_type_their_references_when_given() -> None:
    data = plan_with(
        {"id": "a", "kind": "classify", "inputs": {"text": "$input.t", "labels": ["x", "y"]}}
    )
    load_plan(data)  # without inputs, the type is not known: left to the run
    load_plan(data, inputs={"t": "some text"})
    assert problems_of(data, inputs={"t": 3}) == [
        "step 'a': input text: input should be a valid string ($input.t is an integer)"
    ]
    assert problems_of(data, inputs={"tt": "x"}) == [
        "step 'a': $input.t is not in the run's inputs (did you mean 'tt'?); pass it with --input"
    ]


def test_text_with_inline_references_and_unknown_types_pass() -> None:
    data = plan_with(
        {"id": "t", "kind": "tool", "tool": "anything", "inputs": {}},
        gen("a", "Say ${t.x} and ${input.y}"),
        {"id": "b", "kind": "filter", "inputs": {"query": "$t.q", "passages": "$t.list"}},
        {
            "id": "c",
            "kind": "extract",
            "inputs": {"text": "t", "copy": True},
            "output": {"type": "object"},
        },
    )
    assert [s.id for s in load_plan(data).steps] == ["t", "a", "b", "c"]


def test_an_unknown_after_step_suggests_the_nearest() -> None:
    data = plan_with(gen("draft"), gen("b", after=["draf"]))
    assert problems_of(data) == [
        "step 'b': 'after' names unknown step 'draf' (did you mean 'draft'?)"
    ]


def test_an_unknown_step_reference_suggests_the_nearest_id() -> None:
    data = plan_with(gen("contact"), gen("b", "Write to ${contct.text}"))
    assert problems_of(data) == [
        "step 'b': $contct.text references unknown step 'contct' (did you mean 'contact'?)"
    ]
