"""Incremental parsing of a streamed plan: each step as soon as its JSON object closes.

This is what lets a run dispatch the first steps while the planner is still writing
the rest (LLMCompiler's streaming dispatch). The parser is a small character scanner,
not a full JSON parser: it tracks strings, escapes and nesting depth, finds the
`"steps"` array of the top-level object, and hands each complete element to
`json.loads`. Text before the first `{` (a code fence, a preamble) is skipped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any


class StepScanner:
    """Feed text deltas; collect the step objects completed so far.

    Usage: `for obj in scanner.feed(delta): ...`, then `scanner.text` holds the
    whole document (from its first `{`).
    """

    def __init__(self) -> None:
        self._buf: list[str] = []
        self._started = False
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._string_start = -1
        self._last_key = ""  # the last string closed at depth 1: a key of the plan
        self._in_steps = False
        self._item_start = -1
        self._pos = 0

    @property
    def text(self) -> str:
        """Everything received from the first `{` on."""
        return "".join(self._buf)

    def feed(self, delta: str) -> list[dict[str, Any] | Any]:
        """Take more text; return the step objects (decoded JSON) it completed."""
        if not self._started:
            at = delta.find("{")
            if at < 0:
                return []
            delta, self._started = delta[at:], True
        self._buf.append(delta)
        found: list[Any] = []
        text = self.text if self._item_start >= 0 or self._string_start >= 0 else None
        base = self._pos
        for offset, ch in enumerate(delta):
            pos = base + offset
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
                    if self._depth == 1:
                        text = text if text is not None else self.text
                        self._last_key = text[self._string_start + 1 : pos]
                continue
            if ch == '"':
                self._in_string, self._string_start = True, pos
            elif ch in "{[":
                self._depth += 1
                if ch == "[" and self._depth == 2 and self._last_key == "steps":
                    self._in_steps = True
                elif ch == "{" and self._depth == 3 and self._in_steps:
                    self._item_start = pos
            elif ch in "}]":
                if ch == "}" and self._depth == 3 and self._in_steps and self._item_start >= 0:
                    text = self.text
                    raw = text[self._item_start : pos + 1]
                    self._item_start = -1
                    # A broken step is left for the whole-plan parse to report.
                    with contextlib.suppress(json.JSONDecodeError):
                        found.append(json.loads(raw))
                elif ch == "]" and self._depth == 2:
                    self._in_steps = False
                self._depth -= 1
        self._pos = base + len(delta)
        return found


def scan_steps(chunks: Iterable[str], scanner: StepScanner | None = None) -> Iterator[Any]:
    """Yield each step object of a streamed plan as soon as it is complete."""
    scanner = scanner if scanner is not None else StepScanner()
    for delta in chunks:
        yield from scanner.feed(delta)
