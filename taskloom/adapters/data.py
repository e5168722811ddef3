"""Labelled answers as training pairs: the prompt a step sends, the answer it should get.

The prompt is built exactly as the step builds it when it runs (the kind's instruction,
schema and examples, then the data, through the model's chat template), so the adapter
learns on the tokens it will see when served; the answer is the labelled output as the
kind writes it in examples (`kind.answer`, `json.dumps`), the form the model answers in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskloom.labelled import Labelled
from taskloom.lessons import as_example
from taskloom.tools import KINDS
from taskloom.tools.base import build_messages, parse_inputs

if TYPE_CHECKING:
    from taskloom.chat.llama.host import ModelHost


@dataclass(frozen=True)
class Pair:
    """One training pair, as token ids of the host's model."""

    prompt: list[int]
    answer: list[int]


def pairs(examples: Sequence[Labelled], host: ModelHost) -> list[Pair]:
    """The training pairs of labelled answers of SLM kinds (module doc)."""
    found = []
    for example in examples:
        step = example.step
        kind = KINDS[step.kind]
        inputs = parse_inputs(kind, step.kind, step.inputs)
        messages = build_messages(kind, inputs, kind.schema(inputs, step.output))
        answer = json.dumps(kind.answer(as_example(example)["output"]), ensure_ascii=False)
        found.append(Pair(host.prompt_tokens(messages), host.tokenize(answer)))
    return found
