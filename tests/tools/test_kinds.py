"""The SLM kinds' logic on the scripted fake: prompts, outputs, re-asks and bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskloom import calibration
from taskloom.chat import ScriptedChatModel
from taskloom.errors import OutputValidationError, SchemaError, TaskInputError, ToolError
from taskloom.tools import ToolRegistry, run_task, tool
from taskloom.tools.base import COPY_KEYWORD

CONTACT = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"], "description": "the full name"},
        "city": {"type": ["string", "null"]},
    },
    "required": ["name", "city"],
}


def test_prompt_puts_instruction_and_examples_first_and_text_last() -> None:
    model = ScriptedChatModel([{"name": "Ann", "city": None}, {"name": "Bo", "city": None}])
    examples = [{"input": {"text": "I am Cy from Oslo"}, "output": {"name": "Cy", "city": "Oslo"}}]
    for text in ("I am Ann", "I am Bo"):
        run_task("extract", {"text": text, "examples": examples}, output=CONTACT, model=model)
    (first, _), (second, _) = model.calls
    assert first[0] == second[0], "the instruction, fields and examples are a shared prefix"
    system = first[0]["content"]
    assert system.index("Extract") < system.index("- name: the full name") < system.index("Oslo")
    assert 'Answer: {"name": "Cy", "city": "Oslo"}' in system
    assert first[1]["content"] == "Text: I am Ann\nAnswer:"


def test_extract_needs_an_output_schema() -> None:
    with pytest.raises(TaskInputError, match="extract needs an 'output' JSON schema"):
        run_task("extract", {"text": "x"}, model=ScriptedChatModel())


def test_copy_sends_the_text_as_a_span_constraint_and_drops_rewritten_values() -> None:
    model = ScriptedChatModel([{"name": "Ann Lee", "city": "Paris, France"}])
    out = run_task(
        "extract", {"text": "Ann Lee lives in Paris", "copy": True}, output=CONTACT, model=model
    )
    assert out.value == {"name": "Ann Lee", "city": None}
    _, schema = model.calls[0]
    assert schema is not None and schema[COPY_KEYWORD] == "Ann Lee lives in Paris"


def test_fill_slots_reports_missing_slots() -> None:
    model = ScriptedChatModel([{"city": "Rome", "date": None, "people": "  "}])
    out = run_task(
        "fill_slots",
        {"text": "a table in Rome", "slots": {"city": "c", "date": "d", "people": "p"}},
        model=model,
    )
    assert out.value == {
        "slots": {"city": "Rome", "date": None, "people": None},
        "missing": ["date", "people"],
    }


def test_fill_slots_examples_use_the_flat_answer_shape() -> None:
    model = ScriptedChatModel([{"room": "hall"}])
    example = {"input": {"text": "lights on in the hall"}, "output": {"slots": {"room": "hall"}}}
    run_task(
        "fill_slots",
        {"text": "heat the den", "slots": {"room": "the room"}, "examples": [example]},
        model=model,
    )
    system = model.calls[0][0][0]["content"]
    assert 'Text: lights on in the hall\nAnswer: {"room": "hall"}' in system


class LabelScores(ScriptedChatModel):
    """Scores each label by the text in the prompt: `table[text][label]` probabilities."""

    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        super().__init__()
        self.table = table

    def score(self, messages: Any, continuations: Any) -> list[float]:
        text = messages[-1]["content"].removeprefix("Text: ").removesuffix("\nAnswer:")
        probs = self.table.get(text, self.table["*"])
        return [math.log(next(p for lb, p in probs.items() if lb in c)) for c in continuations]


def test_classify_confidence_is_the_softmax_of_label_scores() -> None:
    model = LabelScores(
        {"money back": {"refund": 0.6, "shipping": 0.2}, "*": {"refund": 0.5, "shipping": 0.5}}
    )
    out = run_task(
        "classify", {"text": "money back", "labels": ["refund", "shipping"]}, model=model
    )
    assert out.value["label"] == "refund" and out.meta["raw_confidence"] == 0.75
    # the reported confidence is the shipped calibration's mapping of that probability
    assert out.value["confidence"] == round(calibration.load().step_confidence("classify", 0.75), 4)
    assert model.calls == [], "classify decides by scores, without generating"


def test_classify_divides_out_the_models_prior_over_labels() -> None:
    # The model prefers "refund" even for empty text: that preference is not evidence.
    model = LabelScores(
        {"late parcel": {"refund": 0.6, "shipping": 0.4}, "*": {"refund": 0.8, "shipping": 0.2}}
    )
    out = run_task(
        "classify", {"text": "late parcel", "labels": ["refund", "shipping"]}, model=model
    )
    assert out.value["label"] == "shipping"
    assert out.meta["raw_confidence"] == round(2 / 2.75, 4)


def test_classify_rejects_labels_that_are_not_strings() -> None:
    with pytest.raises(
        TaskInputError, match=r"classify input labels\.1: input should be a valid string"
    ):
        run_task("classify", {"text": "x", "labels": ["a", 2]}, model=ScriptedChatModel())


def test_filter_scores_the_query_likelihood_each_passage_adds() -> None:
    # log P(query | passage): the baseline (content-free passages) is -10.
    logprob = {"refunds take 5 days": -4.0, "we love cats": -10.5, "refund form": -8.0}
    prompts: list[str] = []

    class QueryLikelihood(ScriptedChatModel):
        def score(self, messages: Any, continuations: Any) -> list[float]:
            assert continuations == [" refund time"]
            prompts.append(messages[-1]["content"])
            passage = messages[-1]["content"].removeprefix("Passage: ").split("\n")[0]
            return [logprob.get(passage, -10.0)]

    def expected(lp: float) -> float:
        gain = (lp + 10.0) / 2  # two words in the query
        return round(1 / (1 + math.exp(-2 * (gain - 0.5))), 4)

    model = QueryLikelihood()
    inputs = {"query": "refund time", "passages": list(logprob), "top_k": 1}
    out = run_task("filter", inputs, model=model)
    assert out.value == {"kept": ["refunds take 5 days"], "scores": [expected(-4.0)]}
    out = run_task("filter", {**inputs, "top_k": None}, model=model)
    assert out.value["kept"] == ["refunds take 5 days", "refund form"]
    assert out.value["scores"] == [expected(-4.0), expected(-8.0)]
    assert "Passage: N/A\nQuestion:" in prompts and "Passage: \nQuestion:" in prompts
    assert model.calls == [], "filter decides by scores, without generating"


def test_filter_rejects_an_empty_passage_list() -> None:
    with pytest.raises(TaskInputError, match="filter input passages: list should have at least 1"):
        run_task("filter", {"query": "q", "passages": []}, model=ScriptedChatModel())


def test_invalid_output_is_reasked_then_fails_with_the_raw_output() -> None:
    model = ScriptedChatModel(["not json", '{"name": 3, "city": null}', '{"name": 4}'])
    with pytest.raises(OutputValidationError) as caught:
        run_task("extract", {"text": "x"}, output=CONTACT, model=model, output_retries=2)
    assert caught.value.raw_output == '{"name": 4}'
    assert len(model.calls) == 3
    assert "extract output failed validation after 3 attempts" in str(caught.value)


def test_a_reask_that_succeeds_counts_every_call() -> None:
    model = ScriptedChatModel(["{", {"name": "Ann", "city": None}])
    out = run_task("extract", {"text": "I am Ann"}, output=CONTACT, model=model)
    assert out.value == {"name": "Ann", "city": None}
    assert out.usage.calls == 2 and out.usage.raw_outputs[0] == "{"


def test_an_invalid_json_schema_is_a_schema_error_naming_the_kind() -> None:
    with pytest.raises(SchemaError, match="extract output schema is not valid JSON Schema"):
        run_task("extract", {"text": "x"}, output={"type": 12}, model=ScriptedChatModel())


def test_an_unregistered_tool_is_a_tool_error() -> None:
    @tool
    def lookup(order_id: str) -> str:
        return order_id

    registry = ToolRegistry([lookup])
    assert run_task("tool", {"order_id": "7"}, tools=registry, tool_name="lookup").value == "7"
    with pytest.raises(ToolError, match="tool 'nope' is not registered"):
        run_task("tool", {}, tools=registry, tool_name="nope")
