"""`filter`: keep the passages relevant to a query, each with a relevance score.

Each passage is judged on its own: the prompt holds the instruction, the query and the
passage, and the score is P(yes) / (P(yes) + P(no)) for the next word, from the token
probabilities (`ChatModel.score`). A passage is kept when its score reaches
`threshold`; the kept passages come best first, at most `top_k` of them. Prompts for
one step share everything up to the passage, so only the passage is evaluated each time.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import ANSWER_CUE, KindInputs, Usage, score, softmax

# Generic demonstrations of the judgement, used when a step gives no examples.
DEFAULT_EXAMPLES = [
    {
        "input": {
            "query": "how do I reset my password",
            "passages": ["Open Settings, choose Security, then Reset password."],
        },
        "output": "yes",
    },
    {
        "input": {
            "query": "how do I reset my password",
            "passages": ["Our office is closed on public holidays."],
        },
        "output": "no",
    },
    {
        "input": {
            "query": "side effects of ibuprofen",
            "passages": ["Ibuprofen can cause stomach pain and heartburn."],
        },
        "output": "yes",
    },
]

ANSWERS = [' "yes"', ' "no"']
"""The two answers as the model writes them after the cue, in JSON."""


class Inputs(KindInputs):
    """Inputs of `filter`."""

    query: str = Field(description="what the passages should be relevant to")
    passages: list[str] = Field(min_length=1, description="the passages to filter (not empty)")
    top_k: int | None = Field(None, ge=1, description="keep at most this many")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="the least score a kept passage has")


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "string", "enum": ["yes", "no"]}


SHOW_SCHEMA = False


def instruction(inputs: Inputs) -> str:
    return "Say whether the passage helps answer the query: yes or no."


def render(inputs: Inputs) -> str:
    return f"Query: {inputs.query}\nPassage: {inputs.passages[0]}"


def answer(output: Any) -> Any:
    return output


def decide(inputs: Inputs, model: ChatModel, messages: list[Message], usage: Usage) -> Any:
    """Score every passage, then keep by threshold and top_k."""
    head = messages[0]
    scored: list[tuple[float, int]] = []
    for i, passage in enumerate(inputs.passages):
        one = inputs.model_copy(update={"passages": [passage]})
        prompt: list[Message] = [head, {"role": "user", "content": f"{render(one)}\n{ANSWER_CUE}"}]
        p_yes = softmax(score(model, prompt, ANSWERS, usage))[0]
        scored.append((p_yes, i))
    kept = sorted((s for s in scored if s[0] >= inputs.threshold), key=lambda s: (-s[0], s[1]))
    kept = kept[: inputs.top_k]
    return {
        "kept": [inputs.passages[i] for _, i in kept],
        "scores": [round(p, 4) for p, _ in kept],
    }


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    return value
