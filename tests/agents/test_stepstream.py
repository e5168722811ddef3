"""Incremental plan parsing: each step as soon as its object closes, at any chunking."""

from __future__ import annotations

import json

import pytest

from taskloom.agents.stepstream import StepScanner, scan_steps

from .conftest import TRIAGE_PLAN


@pytest.mark.parametrize("size", [1, 3, 7, 64, 10_000])
def test_steps_complete_at_any_chunk_size(size: int) -> None:
    text = "```json\n" + json.dumps(TRIAGE_PLAN, indent=1) + "\n```"
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    assert list(scan_steps(chunks)) == TRIAGE_PLAN["steps"]


def test_a_step_is_emitted_before_the_rest_arrives() -> None:
    text = json.dumps(TRIAGE_PLAN)
    first = json.dumps(TRIAGE_PLAN["steps"][0])
    first_end = text.index(first) + len(first)
    scanner = StepScanner()
    assert scanner.feed(text[: first_end - 1]) == []
    assert scanner.feed(text[first_end - 1 : first_end]) == [TRIAGE_PLAN["steps"][0]]


def test_braces_and_quotes_inside_strings_do_not_confuse_it() -> None:
    plan = {
        "goal": 'say "}{" and [steps]',
        "steps": [{"id": "a", "kind": "generate", "inputs": {"instruction": 'x "}" \\ ]'}}],
        "output": "$a.text",
    }
    text = json.dumps(plan)
    assert list(scan_steps(list(text))) == plan["steps"]


def test_only_the_steps_array_counts() -> None:
    text = json.dumps({"output": {"a": {"b": 1}}, "other": [{"x": 1}], "steps": [{"id": "s"}]})
    assert list(scan_steps([text])) == [{"id": "s"}]
