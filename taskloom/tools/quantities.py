"""Quantities a text states that its source does not: the numbers grounding cannot see.

Grounding (`taskloom.chat.grounding`) keeps a text's ids and numbers to those of its
source, run by run, but only runs with a digit. A number in words escapes it, and so
does a number swapped for words: the main job's reply restated "Refunds are issued
within 5 business days after we receive the item" as "... within the same business day
after we receive the item". So, sentence by sentence:

- A sentence restates a sentence of the source when at least half of the source
  sentence's words, and `MIN_SHARED` or more, appear in it in order (a word-by-word
  alignment, `difflib`). Where the alignment replaced words, a quantity of the source's
  words (digits, or a number word: "5", "five") that the sentence no longer has was
  changed, and one of the sentence's words that no source holds was made up. Either is
  reported as the source's words against the text's (`"5" → "the same"`). A quantity
  dropped with its words, and not replaced, is left alone: a shorter restatement is not
  a wrong one.
- In a sentence that restates none, a number word whose value no source holds ("the
  first three months" where the source says 30 days) is reported: `"three" → not in
  the source`. Digits there are grounding's.

Numbers compare by value and by part, so "3 to 5" restates "3-5"; a month's name is not
a number, so "14 March" against "14.03" is reported (a reviewer's minute, against a
wrong date that nothing would catch), and "one" is not a number word (far more often
"one of our agents").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from typing import Any

MIN_SHARED = 4
"""The fewest words a sentence must share with a source sentence to restate it."""
WORD = re.compile(r"[^\W_]+(?:[.,:/-][^\W_]+)*")
"""A word, or a number with its inner punctuation ("84.90", "3:30", "2025-03-14")."""
NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "thousand": 1000, "twice": 2,
}  # fmt: skip
"""Words that state a quantity, by value. Not "one" or "once": far more often a pronoun
or a conjunction ("once we receive it") than a quantity."""


def quantities(word: str) -> list[str]:
    """The numbers a word states, written canonically: "05" and "five" → ["5"], a range
    or a date by its parts ("3-5" → ["3", "5"], "14.03.2025" → ["14", "3", "2025"]), so
    "3 to 5" restates "3-5"; [] for a word that is not a number."""
    if word in NUMBER_WORDS:
        return [str(NUMBER_WORDS[word])]
    if not word[:1].isdigit():
        return []
    return [part.lstrip("0") or "0" for part in re.split(r"[.,:/-]", word) if part.isdigit()]


def sentences(text: str) -> list[str]:
    """The sentences of a text: split after `.`, `!` or `?` before a space, and at lines."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def words(sentence: str) -> list[str]:
    return [w.lower().rstrip(".,:") for w in WORD.findall(sentence)]


def source_sentences(*parts: Any) -> list[str]:
    """The sentences of every string in `parts` (JSON values walked: a context)."""
    found: list[str] = []
    for text in _strings(parts):
        found.extend(sentences(text))
    return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def changed_quantities(text: str, source: Sequence[str]) -> list[str]:
    """Each quantity the text states that `source`, its sentences, does not (module doc),
    as `"source words" → "text words"`."""
    originals = [words(s) for s in source]
    known = {q for original in originals for w in original for q in quantities(w)}
    found: list[str] = []
    for sentence in sentences(text):
        said = words(sentence)
        matcher, original = _closest(said, originals)
        shared = sum(b.size for b in matcher.get_matching_blocks())
        if shared < MIN_SHARED or 2 * shared < len(original):
            found.extend(
                f'"{w}" → not in the source'
                for w in said
                if w in NUMBER_WORDS and str(NUMBER_WORDS[w]) not in known
            )
            continue
        kept = {q for w in said for q in quantities(w)}
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op not in ("replace", "insert"):
                continue
            lost = [q for w in original[i1:i2] for q in quantities(w) if q not in kept]
            new = [q for w in said[j1:j2] for q in quantities(w) if q not in known]
            if lost or new:
                found.append(f'"{" ".join(original[i1:i2])}" → "{" ".join(said[j1:j2])}"')
    return found


def _closest(
    said: list[str], originals: Sequence[list[str]]
) -> tuple[SequenceMatcher[str], list[str]]:
    """The source sentence (its words) sharing the most words with `said`, in order, and
    their alignment."""
    best: tuple[SequenceMatcher[str], list[str]] = (SequenceMatcher(None, [], said), [])
    most = 0
    for original in originals:
        matcher = SequenceMatcher(None, original, said, autojunk=False)
        shared = sum(b.size for b in matcher.get_matching_blocks())
        if shared > most:
            best, most = (matcher, original), shared
    return best
