"""A scripted chat model: the shipped fake for tests of logic that needs no real model."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskloom.chat.base import Completion, Message

Reply = str | dict[str, Any] | list[Any]
Responder = Callable[[Sequence[Message], dict[str, Any] | None], Reply]


class ScriptedChatModel:
    """Replays scripted replies, computes them with a function, or fills the schema.

    Args:
        replies: replies returned in order (a dict or list is sent as JSON).
        respond: called with (messages, schema) when `replies` is empty or exhausted.
        scores: `score()` answers from this function of a continuation; default uniform.
        latency_s: sleep this long per call, to simulate a real model.
        name: the model name recorded in results.

    With neither `replies` nor `respond`, the reply is a minimal value that satisfies
    the schema (or "ok"). Every call is recorded in `calls`.
    """

    def __init__(
        self,
        replies: Sequence[Reply] = (),
        *,
        respond: Responder | None = None,
        scores: Callable[[str], float] | None = None,
        latency_s: float = 0.0,
        name: str = "scripted",
    ) -> None:
        self._replies = list(replies)
        self._respond = respond
        self._scores = scores
        self._latency_s = latency_s
        self._name = name
        self._lock = threading.Lock()
        self.calls: list[tuple[list[Message], dict[str, Any] | None]] = []

    @property
    def name(self) -> str:
        return self._name

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion:
        started = time.perf_counter()
        with self._lock:
            self.calls.append((list(messages), schema))
            reply: Reply | None = self._replies.pop(0) if self._replies else None
        if reply is None:
            if self._respond is not None:
                reply = self._respond(messages, schema)
            else:
                reply = sample_for_schema(schema) if schema else "ok"
        if self._latency_s:
            time.sleep(self._latency_s)
        text = reply if isinstance(reply, str) else json.dumps(reply)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Completion(
            text=text,
            model=self._name,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text.split()),
            prompt_tokens_evaluated=prompt_tokens,
            run_ms=(time.perf_counter() - started) * 1000,
        )

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        if self._scores is None:
            return [math.log(1 / len(continuations))] * len(continuations)
        return [self._scores(c) for c in continuations]


def sample_for_schema(schema: dict[str, Any]) -> Any:
    """A small value that satisfies common JSON schemas (object, array, enum, scalars)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for combo in ("anyOf", "oneOf", "allOf"):
        if schema.get(combo):
            return sample_for_schema(schema[combo][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample_for_schema(props[name]) for name in schema.get("required", props)}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [sample_for_schema(schema.get("items", {}))] * count
    defaults: dict[str, Any] = {
        "string": "x" * schema.get("minLength", 1),
        "integer": max(0, schema.get("minimum", 0)),
        "number": max(0.0, schema.get("minimum", 0.0)),
        "boolean": False,
        "null": None,
    }
    return defaults.get(kind)
