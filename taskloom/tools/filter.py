"""`filter`: keep the passages relevant to a query, each with a relevance score.

Relevance comes from token probabilities, not from asking the model: a passage is
relevant when reading it makes the query more likely (as in zero-shot reranking by
query likelihood, Sachan et al., 2022, "Improving Passage Retrieval with Zero-Shot
Question Generation"). For each passage the model scores the query as the question
the passage answers, and the same query after content-free passages:

    gain  = (log P(query | passage) - log P(query | no passage)) / words in the query
    score = sigmoid(2 * (gain - 0.5))

So a score of 0.5 means the passage makes each word of the query e^0.5 (1.65x) more likely.
Passages whose score reaches `threshold` are kept, best first, at most `top_k`.
Small models are poorly calibrated when asked "relevant: yes or no?" (they say yes to
almost anything), while the likelihood gain separates on- and off-topic passages well.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from taskloom.chat import ChatModel, Message
from taskloom.tools.base import CONTENT_FREE, KindInputs, Usage, score_all

GAIN_MIDPOINT = 0.5
"""Log-likelihood gain per query word (nats) that scores 0.5."""


class Inputs(KindInputs):
    """Inputs of `filter`."""

    query: str = Field(description="what the passages should be relevant to")
    passages: list[str] = Field(min_length=1, description="the passages to filter (not empty)")
    top_k: int | None = Field(None, ge=1, description="keep at most this many")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="the least score a kept passage has")


def schema(inputs: Inputs, output: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "kept": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["kept", "scores"],
    }


SHOW_SCHEMA = False


def instruction(inputs: Inputs) -> str:
    head = "Read the passage, then write a question it answers."
    # A step's examples show passages it kept, each with its query.
    for ex in inputs.examples:
        kept = ex.output.get("kept", []) if isinstance(ex.output, dict) else []
        query = ex.input.get("query", inputs.query)
        head += "".join(f"\n\nPassage: {p}\nQuestion: {query}" for p in kept)
    return head


def render(inputs: Inputs) -> str:
    return f"Passage: {inputs.passages[0]}\nQuestion:"


def answer(output: Any) -> Any:
    return output


def decide(inputs: Inputs, model: ChatModel, messages: list[Message], usage: Usage) -> Any:
    """Score every passage by the query likelihood it adds, then keep the best."""
    head: Message = {"role": "system", "content": instruction(inputs)}
    query = [" " + inputs.query.strip()]
    n_tokens = max(len(inputs.query.split()), 1)

    def call(passage: str) -> tuple[list[Message], list[str]]:
        user = render(inputs.model_copy(update={"passages": [passage]}))
        return [head, {"role": "user", "content": user}], query

    # The content-free baselines and every passage: parallel sequences on a batching host.
    logprobs = [
        s[0] for s in score_all(model, [call(p) for p in [*CONTENT_FREE, *inputs.passages]], usage)
    ]
    baseline = sum(logprobs[: len(CONTENT_FREE)]) / len(CONTENT_FREE)
    scored: list[tuple[float, int]] = []
    for i, logprob in enumerate(logprobs[len(CONTENT_FREE) :]):
        gain = (logprob - baseline) / n_tokens
        scored.append((1 / (1 + math.exp(-2 * (gain - GAIN_MIDPOINT))), i))
    kept = sorted((s for s in scored if s[0] >= inputs.threshold), key=lambda s: (-s[0], s[1]))
    kept = kept[: inputs.top_k]
    return {
        "kept": [inputs.passages[i] for _, i in kept],
        "scores": [round(p, 4) for p, _ in kept],
    }


def finish(value: Any, inputs: Inputs, model: ChatModel, messages: list[Message]) -> Any:
    return value
