"""Speculative decoding with no draft model: drafts from the input and the answer's shape,
verified in the same `llama_decode` that evaluates the next token.

Most of a structured answer is text the model hardly chooses: the keys and punctuation
that come between values, and values copied from the input. `Drafter` proposes what
follows the output so far:

- **Between values**, the text that came between the same two keys in this schema's
  last answer (the model's own spacing and key order), or, before any answer, in a
  skeleton of the schema's keys: `", "city": "` after the name's value.
- **Inside a string value**, the input text after the value so far, to the span's
  likely end (`span_end`), then the closing quote and the next key: once "Tom" is
  picked, ` Baker", "city": "` is drafted. One token of overlap is enough, where
  prompt lookup needs n. Of several places, the one whose span runs longest.
- **At a value's start, and in a number or null**, nothing.
- **Elsewhere** (nested shapes, plain text), prompt lookup: the tokens that followed
  the last few tokens where they occurred before in the prompt.

`Picker.verify` walks the drafted positions with the ordinary picker: the grammar,
grounding and no-repeat rules all apply, token by token, exactly as without a draft.
It accepts the longest prefix of the draft on which the picked token agrees, plus the
picked token at the first disagreement. So, given the same logits, the output is the
greedy output whatever the draft (a draft tokenised otherwise than the model's own pick
is only rejected there). On a CPU the logits are not quite the same: llama.cpp's sums
change in their last bits with a decode's shape, as they do with the thread count, and
a near-tie can flip (`benchmarks/bench_speculate.py` measures both). Only greedy
decoding is drafted, since sampling would need rejection sampling.

How much to draft: each drafted token costs a row of the batch and its logits (262k of
them for Gemma). On a CPU that is real compute, so a step's allowance is shared among
the sequences generating at once, and prompt lookup, the kind of draft rejected most,
drafts at most two tokens; a GPU has room to spare (`allowance`, `lookup_limit`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.chat.base import COPY_KEYWORD, Message

MAX_DRAFT = 6
"""The most tokens drafted after one picked token. On llama.cpp's CPU backend a decode
of up to 7 tokens computes each row bit for bit as a one-token decode does (its flash
attention tiles from 8 query rows on, a repacked matmul from 4, so the sequential host
keeps its weights unpacked): a verified draft then leaves greedy outputs identical."""
CPU_ALLOWANCE = 16
"""Drafted tokens per batch step on a CPU, shared by the generating sequences."""
GPU_ALLOWANCE = 128
"""Drafted tokens per batch step on a GPU, where a small batch costs about one row."""
CPU_LOOKUP = 2
"""The most tokens prompt lookup drafts at once on a CPU. A drafted token pays when it
is accepted more often than a row's cost over a decode's (about 7.6 ms against 18 ms on
2 cores), and lookup's are accepted least: 37% of them on the eval sets, against 48% of
the copied spans' and 55% of the answer shape's. Capped at 2, extraction generated a
token in 0.919 of the time uncapped on the eval sets (where 2 was chosen), 0.903 on a
set written by another hand, and `generate` replies in 0.797
(`benchmarks/bench_draft_choice.py`, docs/batching.md)."""
MATCH = 8
"""How far back prompt lookup compares the output with an earlier occurrence."""
SPAN_CHARS = 48
"""How much input text a value's draft looks at."""


class Lookup:
    """Prompt lookup: the tokens that followed the output's last tokens in the prompt.

    Of several earlier places, the one matching the most preceding tokens wins, then
    the latest (the input comes after the examples).
    """

    def __init__(self, prompt: Sequence[int]) -> None:
        self._prompt = list(prompt)
        self._at: dict[int, list[int]] = {}
        for i, t in enumerate(self._prompt[:-1]):  # the last has nothing after it
            self._at.setdefault(t, []).append(i)

    def propose(self, out: Sequence[int], n: int) -> list[int]:
        """Up to `n` tokens that may follow `prompt + out` (none when nothing matches)."""
        context = (self._prompt[-MATCH:] + list(out[-MATCH:]))[-MATCH:]
        if not context or n <= 0:
            return []
        prompt = self._prompt
        best, best_len = -1, 0
        for p in reversed(self._at.get(context[-1], ())):
            length = 1
            while (
                length < len(context)
                and p - length >= 0
                and prompt[p - length] == context[-1 - length]
            ):
                length += 1
            if length > best_len:
                best, best_len = p, length
                if length == len(context):
                    break
        return prompt[best + 1 : best + 1 + n] if best >= 0 else []


@dataclass(frozen=True)
class _Where:
    """Where the text of a one-level JSON object answer stands."""

    in_value: bool
    is_string: bool
    key: str | None
    """In a value: its key. Between values: the key of the value that ended last (None:
    before the first value)."""
    typed: str
    """In a value: its text so far (inside the quotes). Between values: the text since
    the last one ended (after its closing quote), up to here."""


class _Scanner:
    """Follows a JSON object's text a character at a time (see `where`)."""

    def __init__(self) -> None:
        self.text = ""
        self.depth = 0
        self.in_string = self.is_key = self.escaped = False
        self.in_scalar = False
        self.key: str | None = None  # the last key read
        self.done_key: str | None = None  # the key of the value that ended last
        self.between = 0  # where the text between values began
        self.started = 0  # where the current string or scalar began
        self.is_lost = False  # nested, or not an object: no opinion

    def feed(self, chunk: str) -> None:
        for ch in chunk:
            self._feed(ch)
            self.text += ch

    def _feed(self, ch: str) -> None:
        i = len(self.text)
        if self.is_lost:
            return
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
                if self.is_key:
                    self.key = self.text[self.started :]
                else:
                    self.done_key, self.between = self.key, i + 1
            return
        if self.in_scalar and (ch in ",}" or ch.isspace()):
            self.in_scalar = False
            self.done_key, self.between = self.key, i
        if ch == '"':
            self.in_string, self.started = True, i + 1
            self.is_key = not self.text.rstrip().endswith(":")
            self.is_lost |= self.depth != 1
        elif ch in "{[":
            self.depth += 1
            self.is_lost |= self.depth > 1 or ch == "["
        elif ch in "}]":
            self.depth -= 1
        elif not self.in_scalar and not ch.isspace() and ch not in ",:":
            self.in_scalar, self.started = True, i

    def where(self) -> _Where | None:
        """Where the text fed so far stands; None where the drafter has no opinion."""
        if self.is_lost or (self.in_string and self.is_key) or self.depth > 1:
            return None
        if self.in_string or self.in_scalar:
            typed = self.text[self.started :]
            return _Where(True, self.in_string, self.key, typed)
        if self.depth == 0 and self.text.strip():
            return None  # the object has closed
        return _Where(False, False, self.done_key, self.text[self.between :])


def template_of(answer: str) -> dict[str | None, str]:
    """The text between values in a one-level JSON object answer, by the key of the value
    before it (None: before the first value), up to and with the next value's opening
    quote: `{None: ' { "name": "', "name": ', "city": "', "city": ' }'}`."""
    scanner = _Scanner()
    segments: dict[str | None, str] = {}
    before = scanner.where()
    for ch in answer:
        scanner.feed(ch)
        if scanner.is_lost:
            return {}
        now = scanner.where()
        if before is not None and not before.in_value:
            if now is not None and now.in_value:  # a value began: a string with its quote
                segments[before.key] = before.typed + (ch if now.is_string else "")
            elif now is None and scanner.depth == 0:  # the object ended
                segments[before.key] = before.typed + ch
        before = now
    return segments


class Drafter:
    """Proposes the tokens after the output so far (see the module doc).

    Args:
        source: the text values may be copied from (the prompt's text).
        template: the text between values, from this schema's last answer or skeleton
            (`template_of`); empty for an answer that is not a JSON object.
        tokenize: text to tokens, as the model's tokenizer does.
        lookup: the prompt lookup used where the other two have nothing.
        lookup_limit: the most tokens prompt lookup drafts at once (`lookup_limit`).
    """

    def __init__(
        self,
        source: str,
        template: dict[str | None, str],
        tokenize: Callable[[str], list[int]],
        lookup: Lookup,
        lookup_limit: int = MAX_DRAFT,
    ) -> None:
        self._source = source
        self._template = template
        self._tokenize = tokenize
        self._lookup = lookup
        self.lookup_limit = lookup_limit

    def propose(self, out: Sequence[int], text: bytes, n: int) -> list[int]:
        """Up to `n` tokens that may follow the output `out` (which spells `text`)."""
        if n <= 0:
            return []
        drafted = self._text(text.decode("utf-8", errors="ignore")) if self._template else None
        if drafted is None:
            return self._lookup.propose(out, min(n, self.lookup_limit))
        return self._tokenize(drafted)[:n] if drafted else []

    def _text(self, text: str) -> str | None:
        """What to draft: None where the answer's shape says nothing (prompt lookup
        drafts instead), "" where nothing should be drafted."""
        scanner = _Scanner()
        scanner.feed(text)
        where = scanner.where()
        if where is None:
            return None
        if where.in_value:
            if not where.typed or not where.is_string:
                # A value's first token is the model's choice, and a number or a null
                # is not copied: prompt lookup drafted the examples' values here, 12%
                # more rows for 2.6% fewer decodes on the eval sets (bench_draft_choice).
                return ""
            return self._span_after(where.typed, self._template.get(where.key)) or None
        segment = self._template.get(where.key)
        if segment is None or not segment.startswith(where.typed):
            return None
        return segment[len(where.typed) :] or None

    def _span_after(self, typed: str, closing: str | None) -> str:
        """The draft after `typed`, a value's text so far: where `typed` occurs at
        several places of the input, the place whose likely span runs longest, the
        latest of equals (`benchmarks/bench_draft_choice.py` measured the choices)."""
        best = ""
        at = self._source.rfind(typed)
        while at >= 0:
            rest = self._source[at + len(typed) : at + len(typed) + SPAN_CHARS]
            if closing is None:
                return rest  # no template: the span's end is not guessed, so the latest
            if len(drafted := span_end(rest) + '"' + closing) > len(best):
                best = drafted
            at = self._source.rfind(typed, 0, at + len(typed) - 1) if at else -1
        return best


_NAME_PART = re.compile(r"[-' ]?[^\W_]*")


def span_end(rest: str) -> str:
    """The likely rest of a copied value, given the input text after what is copied so
    far: the current word, then further words while they start with a capital or a digit
    (names, places, ids), so that "Tom" + " Baker from Seattle" ends at " Baker"."""
    end = 0
    while end < len(rest):
        m = _NAME_PART.match(rest, end)
        if m is None or m.end() == end:
            break
        word = m.group().lstrip("-' ")
        is_same_word = end == 0 and m.group() == word  # the word copied so far goes on
        if not is_same_word and not (word[:1].isupper() or word[:1].isdigit()):
            break
        end = m.end()
    return rest[:end]


def skeleton_template(schema: dict[str, Any] | None) -> dict[str | None, str]:
    """The text between values of a one-level object schema, in the grammar's key order
    (required first) and `json.dumps`'s spacing; used before the schema's first answer."""
    props = (schema or {}).get("properties")
    if not isinstance(props, dict) or not props:
        return {}
    required = [k for k in props if k in (schema or {}).get("required", [])]
    keys = required + [k for k in props if k not in required]
    segments: dict[str | None, str] = {None: "{" + json.dumps(keys[0]) + ': "'}
    for prev, key in itertools.pairwise(keys):
        segments[prev] = ", " + json.dumps(key) + ': "'
    segments[keys[-1]] = "}"
    return segments


class Templates:
    """By schema, the text between values of its latest answer (`template_of`), so that
    a worker drafts the keys and spacing its model actually writes; its drafters' prompt
    lookup drafts up to `lookup_limit` tokens."""

    def __init__(self, tokenize: Callable[[str], list[int]], lookup_limit: int = MAX_DRAFT) -> None:
        self._tokenize = tokenize
        self._lookup_limit = lookup_limit
        self._by_shape: dict[str, dict[str | None, str]] = {}

    def drafter(
        self, messages: Sequence[Message], prompt: Sequence[int], schema: dict[str, Any] | None
    ) -> Drafter:
        """A drafter for one generation from `prompt`, the tokens of `messages`."""
        template = self._by_shape.get(_shape(schema)) or skeleton_template(schema)
        source = "\n".join(m["content"] for m in messages)
        return Drafter(source, template, self._tokenize, Lookup(prompt), self._lookup_limit)

    def learn(self, schema: dict[str, Any] | None, answer: str) -> None:
        """Keep the text between values of this answer for the schema's next ones."""
        template = template_of(answer) if schema is not None else {}
        if template:
            self._by_shape[_shape(schema)] = template


def _shape(schema: dict[str, Any] | None) -> str:
    """A schema's key for its answers' template: the copy source left out, as it changes
    with every input while the answer's shape does not."""
    shape = {k: v for k, v in (schema or {}).items() if k != COPY_KEYWORD}
    return json.dumps(shape, sort_keys=True)


def allowance(*, on_gpu: bool) -> int:
    """Drafted tokens per batch step for this device."""
    return GPU_ALLOWANCE if on_gpu else CPU_ALLOWANCE


def lookup_limit(*, on_gpu: bool) -> int:
    """The most tokens prompt lookup drafts at once on this device (`CPU_LOOKUP`)."""
    return MAX_DRAFT if on_gpu else CPU_LOOKUP


def draft_size(allowance: int, generating: int) -> int:
    """Tokens each of `generating` sequences may draft this step, out of `allowance`."""
    if generating <= 0:
        return 0
    return max(0, min(MAX_DRAFT, allowance // generating - 1))
