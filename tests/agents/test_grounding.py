"""A local plan must be about its goal: examples chosen by similarity, copies rejected.

The local model is the shipped scripted fake: what is tested is what the planner does
with a reply, whatever model wrote it.
"""

from __future__ import annotations

import copy
from typing import Any

from taskloom.agents import Planner
from taskloom.agents.examples import POOL, nearest
from taskloom.agents.grounding import content_words, grounding_problems
from taskloom.chat import ScriptedChatModel
from taskloom.plan import load_plan

GOAL = "Extract the person's name and the city they moved to"
INPUTS = {"text": "Ana Silva moved to Lisbon last year."}

# What the 270M model wrote for GOAL in issue 17: the prompt's fixed example, copied.
COPIED_TRIAGE = {
    "version": 1,
    "steps": [
        {"id": "contact", "kind": "extract", "inputs": {"text": "$input.text"},
         "output": {"type": "object", "properties": {"name": {"type": "string"}},
                    "required": ["name"]}},
        {"id": "intent", "kind": "classify",
         "inputs": {"text": "$input.text", "labels": ["refund", "shipping", "other"]}},
        {"id": "reply", "kind": "generate",
         "inputs": {"instruction": "Draft a short reply to ${contact.name} about ${intent.label}",
                    "context": "$input.text"}},
    ],
    "output": {"intent": "$intent.label", "reply": "$reply.text"},
}  # fmt: skip

FITTING = {
    "version": 1,
    "steps": [
        {"id": "person", "kind": "extract", "inputs": {"text": "$input.text", "copy": True},
         "output": {"type": "object", "required": ["name", "city"],
                    "properties": {"name": {"type": "string"}, "city": {"type": "string"}}}},
    ],
    "output": {"name": "$person.name", "city": "$person.city"},
}  # fmt: skip


def problems(plan: dict[str, Any], goal: str = GOAL, **kw: Any) -> list[str]:
    return grounding_problems(load_plan(plan), goal, kw.pop("inputs", INPUTS), **kw)


def test_the_issues_copied_plan_does_not_answer_the_goal() -> None:
    (problem,) = problems(COPIED_TRIAGE)
    assert "does not answer the goal" in problem
    assert "city" in problem and "person" in problem  # what the goal asks about


def test_a_plan_about_the_goal_passes() -> None:
    assert problems(FITTING) == []
    assert content_words("the cities' names") == {"city", "name"}


def test_a_plan_that_ignores_an_input_is_named() -> None:
    inputs = {**INPUTS, "known_cities": ["Lisbon", "Porto"]}
    (problem,) = problems(FITTING, inputs=inputs)
    assert "no step uses input 'known_cities'" in problem and "$input.known_cities" in problem


def test_an_output_that_reads_no_step_is_named() -> None:
    plan = {**FITTING, "output": "Ana Silva, Lisbon"}
    (problem,) = problems(plan)
    assert '"output" references no step' in problem


def test_a_copy_of_a_shown_example_is_named() -> None:
    example = POOL[3]  # the invoice example, whose own input is $input.invoice
    plan = {"version": 1, **copy.deepcopy(example["plan"])}
    found = problems(plan, example["goal"], inputs={"invoice": "Total 40 EUR, due 1 June."},
                     examples=[example["plan"]])  # fmt: skip
    assert any("copies an example plan" in p for p in found)


def test_examples_are_the_nearest_to_the_goal() -> None:
    invoice = nearest("Get the total and due date of this invoice", {"invoice": "..."}, k=1)
    review = nearest("Is the review positive or negative? Then answer it", {"review": "..."}, k=1)
    assert "invoice" in invoice[0]["goal"] and "review" in review[0]["goal"]
    for example in POOL:  # every example is a valid plan over its own inputs
        inputs = {name: [] if "list" in what else "" for name, what in example["inputs"].items()}
        load_plan({"version": 1, **example["plan"]}, inputs=inputs)
        plan = load_plan({"version": 1, **example["plan"]})
        assert grounding_problems(plan, example["goal"], inputs) == [], example["goal"]


def test_the_local_planner_repairs_a_copied_plan_with_the_named_problem() -> None:
    slm = ScriptedChatModel(replies=[COPIED_TRIAGE, FITTING], name="tiny")
    planner = Planner(slm, is_local=True, allow_llm_steps=False)
    plan = planner.plan(GOAL, INPUTS)
    assert plan.output == FITTING["output"] and planner.attempts == 2
    feedback = slm.calls[1][0][-1]["content"]
    assert "does not answer the goal" in feedback and "corrected JSON plan" in feedback
    system = slm.calls[0][0][0]["content"]
    assert "Examples: other goals" in system
    assert "Triage this support email" not in system  # the fixed example is gone


def test_the_prompt_shows_examples_chosen_for_each_goal() -> None:
    slm = ScriptedChatModel(replies=[FITTING, FITTING], name="any")
    planner = Planner(slm, allow_llm_steps=False)  # the same prompt for every planner
    planner.plan("Pull the invoice total out and remind the customer to pay", {"text": "x"})
    planner.plan("Which manual sections explain the reset? Explain them", {"text": "x"})
    first, second = (call[0][0]["content"] for call in slm.calls)
    assert "Goal: Pull the invoice total" in first and "Goal: Pull the invoice total" not in second
    assert "Goal: Find the manual sections" in second


def test_the_local_planner_falls_back_to_the_plan_it_is_given() -> None:
    slm = ScriptedChatModel(replies=[COPIED_TRIAGE] * 3, name="tiny")
    planner = Planner(slm, is_local=True, fallback=lambda goal, inputs: load_plan(FITTING))
    plan = planner.plan(GOAL, INPUTS)
    assert plan.output == FITTING["output"]
    assert planner.last_fallback and "does not answer the goal" in planner.last_fallback


def test_plans_from_an_endpoint_are_not_held_to_the_local_checks() -> None:
    slm = ScriptedChatModel(replies=[COPIED_TRIAGE], name="big")
    plan = Planner(slm, allow_llm_steps=False).plan(GOAL, INPUTS)
    assert [s.id for s in plan.steps] == ["contact", "intent", "reply"]
