"""Comparing greedy replies decoded in different shapes, without asking for the same text.

llama.cpp's CPU sums are not batch-invariant: a decode of another shape (a batch, a
draft, a larger KV buffer, other threads) sums in another order, so logits differ in
their last bits and a near-tie between two tokens may flip ("john.smith" or "johnsmith").
Which near-ties flip depends on the CPU's kernels, so a test asking for identical text
passes on one machine and fails on another. The tests ask instead what holds on any CPU:
- most fields agree with the reference's reply (`FIELDS_AGREE`);
- each reply belongs to its own call: the reference model finds it far likelier for that
  call than for any other (`attribution`). A decoding bug that mixes sequences (another
  one's logits or KV cache) fails this, which each test shows with a control.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from taskloom.chat import ChatModel, Completion, Message
from taskloom.chat.llama.host import ModelHost

FIELDS_AGREE = 0.7
"""The share of fields that must equal the reference's. On the 11 extraction texts, a
batch agreed on every field on one CPU; on CI's, 2 of 11 replies differed by a near-tie
(one an email with or without its dot)."""


def reply(host: ModelHost, messages: list[Message], schema: dict[str, Any]) -> Completion:
    """The host's greedy reply to `messages`, as JSON conforming to `schema`."""
    return host.complete(messages, schema=schema, max_tokens=128)


def fields_agreeing(replies: Sequence[str], reference: Sequence[str]) -> float:
    """The share of the reference replies' fields that the replies give the same value."""
    pairs = [(json.loads(a), json.loads(b)) for a, b in zip(replies, reference, strict=True)]
    same = sum(a.get(key) == value for a, b in pairs for key, value in b.items())
    return same / sum(len(b) for _, b in pairs)


def attribution(
    calls: Sequence[tuple[ChatModel, Sequence[Message]]], replies: Sequence[str]
) -> list[float]:
    """For each reply, how many nats likelier it is for its own call (model and prompt)
    than for the likeliest other call: positive when it belongs to its own."""
    table = [model.score(messages, replies) for model, messages in calls]  # [call][reply]
    return [
        table[i][i] - max(row[i] for j, row in enumerate(table) if j != i)
        for i in range(len(replies))
    ]
