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

Numbers compare by value and by part, so "3 to 5" restates "3-5"; a month's name next
to a day or a year is its number, so "14 March" restates "14.03". Durations compare by
length, so "two weeks" restates "14 days" and "one week" does not; a duration outside
a restatement is reported like a number word when no source states its length ("up to
one month" where the source says 14 days). "one" is a number only before a unit (far
more often "one of our agents"), and an ordinal word ("the first") may stand for a
number the source states but is never reported.
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
or a conjunction ("once we receive it") than a quantity, unless a unit follows."""
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
    "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
    "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
    "thirtieth": 30,
}  # fmt: skip
"""Ordinal words may stand for a number ("the first" for "the 1st") but are never one
to keep or to report: "first" is far more often an order than a date."""
UNITS = {"one": 1, **{w: n for w, n in NUMBER_WORDS.items() if 2 <= n <= 9}}
TENS = {w: n for w, n in NUMBER_WORDS.items() if n in (20, 30, 40, 50, 60, 70, 80, 90)}
MONTHS = {
    name: number
    for number, names in enumerate(
        (("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
         ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
         ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
         ("december", "dec")),
        start=1,
    )
    for name in names
}  # fmt: skip
"""A month's name is its number next to a day or a year ("14 March" = "14.03")."""
UNIT_MINUTES = {
    "minute": 1, "min": 1, "hour": 60, "hr": 60, "day": 1440, "week": 10080,
    "fortnight": 20160, "month": 43200, "year": 525600,
}  # fmt: skip
"""Units of time, in minutes, so durations compare by length: "24 hours" = "one day",
"14 days" = "two weeks"; a month is 30 days."""
PER_UNIT = {
    "hourly": "hour", "daily": "day", "weekly": "week", "fortnightly": "fortnight",
    "monthly": "month", "yearly": "year", "annually": "year", "annual": "year",
}  # fmt: skip
"""Words that are one unit of time on their own ("a monthly fee" = "a fee per month")."""
ONE_UNIT = {"a", "an", "one", "per", "each", "every"}
QUALIFIERS = {"business", "working", "calendar", "full", "whole", "clear", "consecutive"}
"""Words between a number and its unit that do not change the comparison."""
RANGE = {"to", "or", "and", "-"}


def number_word(word: str) -> int | None:
    """A number word's value, a compound's too ("twenty-five" → 25); None for any other
    word, "one" included (`NUMBER_WORDS`)."""
    tens, _, unit = word.partition("-")
    if unit and tens in TENS and unit in UNITS:
        return TENS[tens] + UNITS[unit]
    return NUMBER_WORDS.get(word)


def ordinal_word(word: str) -> int | None:
    """An ordinal word's number ("fifteenth" → 15, "twenty-first" → 21), else None."""
    tens, _, unit = word.partition("-")
    if unit and tens in TENS and ORDINALS.get(unit, 10) < 10:
        return TENS[tens] + ORDINALS[unit]
    return ORDINALS.get(word)


def quantities(word: str) -> list[str]:
    """The numbers a word states, written canonically: "05" and "five" → ["5"], a range
    or a date by its parts ("3-5" → ["3", "5"], "14.03.2025" → ["14", "3", "2025"]), so
    "3 to 5" restates "3-5", and a number by its digits ("6am", "1st" → ["6"], ["1"]);
    [] for a word that is not a number."""
    spelled = number_word(word)
    if spelled is not None:
        return [str(spelled)]
    digits = re.match(r"\d+(?:[.,:/-]\d+)*", word)
    if digits is None:
        return []
    return [part.lstrip("0") or "0" for part in re.split(r"[.,:/-]", digits.group())]


def readings(word: str) -> list[list[str]]:
    """The ways a word may state its numbers: by its parts (`quantities`), and a decimal
    or grouped number by its value ("1,250.00" → [["1250"]], "3.50" → [["3.5"]]), where
    its parts are kept only if it may be a date or a time ("14.03" → [["14", "3"],
    ["14.03"]], "7.30pm" → [["7", "30"], ["7.3"]]): "5.3" does not restate "3.5"."""
    parts = quantities(word)
    number = re.match(r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)([^\d.,:/-]*)$", word)
    if number is None:
        return [parts]
    digits, suffix = number.groups()
    whole, _, fraction = digits.replace(",", "").partition(".")
    fraction = fraction.rstrip("0")
    value = [(whole.lstrip("0") or "0") + (f".{fraction}" if fraction else "")]
    day, _, month = digits.partition(".")
    dated = "," not in digits and len(month) == 2 and int(day) <= 31 and int(month) <= 12
    return [parts, value] if dated or suffix in ("am", "pm") else [value]


def stated(said: Sequence[str], *, ordinals: bool = False) -> list[list[list[str]]]:
    """The quantities each word of a sentence states (`said`, its words), in context, as
    its readings (`readings`): a word holds up where one of them does; a duration as
    its length in minutes over every word of it ("14 business days" → three times
    [["m20160"]]); a month's name as its number next to a day or a year; with
    `ordinals`, ordinal words as their number."""
    found = [readings(w) for w in said]
    for i, w in enumerate(said):
        ordinal = ordinal_word(w) if ordinals else None
        if ordinal is not None:
            found[i] = [[str(ordinal)]]
        if w in MONTHS and _dated(said, i):
            found[i] = [[str(MONTHS[w])]]
    for start, end, minutes in durations(said):
        for i in range(start, end):
            found[i] = [[f"m{m:g}" for m in minutes]]
    return found


def _all(readings: Iterable[list[list[str]]]) -> set[str]:
    return {q for word in readings for reading in word for q in reading}


def _holds(readings: list[list[str]], known: set[str]) -> bool:
    """Whether a word's quantities hold up against `known`: one reading's all are in it."""
    return any(set(reading) <= known for reading in readings)


def durations(said: Sequence[str]) -> list[tuple[int, int, list[float]]]:
    """Each duration of a sentence (its words) as (first word, past its last word, its
    lengths in minutes): "3 to 5 business days" → (i, i + 5, [4320, 7200])."""
    found = []
    for u, w in enumerate(said):
        if w in PER_UNIT:
            found.append((u, u + 1, [float(UNIT_MINUTES[PER_UNIT[w]])]))
            continue
        unit = UNIT_MINUTES.get(w.removesuffix("s"))
        if unit is None:
            continue
        n = u - 1
        while n >= 0 and said[n] in QUALIFIERS:
            n -= 1
        counts = _counts(said[n]) if n >= 0 else []
        if not counts:
            continue
        start = n
        if said[n] in ("a", "an") and n >= 1 and said[n - 1] == "half":
            start, counts = n - 1, [0.5]
        elif n >= 2 and said[n - 1] in RANGE and _counts(said[n - 2]):
            start, counts = n - 2, _counts(said[n - 2]) + counts
        found.append((start, u + 1, [c * unit for c in counts]))
    return found


def _counts(word: str) -> list[float]:
    """How many of a unit a word before it counts: "3" → [3], "3-5" → [3, 5], "two",
    "one" and "a" → [2], [1], [1]."""
    if word in ONE_UNIT:
        return [1.0]
    spelled = number_word(word)
    if spelled is not None:
        return [float(spelled)]
    if re.fullmatch(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?", word):
        return [float(part) for part in word.split("-")]
    return []


def _dated(said: Sequence[str], i: int) -> bool:
    """Whether the month's name at `i` stands next to a day or a year ("may" only after
    a day or before a year: far more often the verb)."""
    before = said[i - 1] if i else ""
    after = said[i + 1] if i + 1 < len(said) else ""
    if said[i] == "may":
        return before[:1].isdigit() or re.fullmatch(r"\d{4}", after) is not None
    return before[:1].isdigit() or after[:1].isdigit()


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
    known = _known(originals)
    found: list[str] = []
    for sentence in sentences(text):
        said = words(sentence)
        matcher, original = _closest(said, originals)
        shared = sum(b.size for b in matcher.get_matching_blocks())
        if shared < MIN_SHARED or 2 * shared < len(original):
            found.extend(f'"{q}" → not in the source' for q in _unsupported(said, known))
            continue
        by_word = stated(said)
        kept = _known([said], ordinals=True)
        before = stated(original)
        reported: set[str] = set()  # a duration's number and unit may change apart
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op not in ("replace", "insert"):
                continue
            lost = {q for r in before[i1:i2] if not _holds(r, kept) for q in r[0]}
            new = {q for r in by_word[j1:j2] if not _holds(r, known) for q in r[0]}
            if (lost | new) - reported:
                found.append(f'"{" ".join(original[i1:i2])}" → "{" ".join(said[j1:j2])}"')
            reported |= lost | new
    return found


def written_otherwise(run: str, source: Sequence[str]) -> bool:
    """Whether a run with digits that grounding finds in no source (an id's or a number's
    characters) writes only numbers the sources state in other words: "1200" for
    "1,200", "2" for "two", "14/03/2027" for "14 March 2027". A run with a letter before
    its digits ("A-1043", "TK22") is an id: never."""
    said = words(run)
    if not said or not all(NUMBER.fullmatch(w) for w in said):
        return False
    known = _known([words(s) for s in source])
    return all(_holds(readings, known) for readings in stated(said))


NUMBER = re.compile(r"\d[\d.,:/-]*(?:am|pm|st|nd|rd|th)?")
"""A word that is a number, a date, a time or an amount, not an id."""


def _known(originals: Sequence[list[str]], *, ordinals: bool = False) -> set[str]:
    """Every quantity the sentences (their words) state, in every reading, and each
    number a duration holds on its own too (`stated`)."""
    return {
        q
        for o in originals
        for q in _all(stated(o, ordinals=ordinals)) | _all([quantities(w)] for w in o)
    }


def _unsupported(said: list[str], known: set[str]) -> list[str]:
    """In a sentence that restates none: its number words and its durations that no
    source states (digits alone are grounding's)."""
    timed = durations(said)
    inside = {i for start, end, _ in timed for i in range(start, end)}
    spans = [(start, end) for start, end, ms in timed if any(f"m{m:g}" not in known for m in ms)]
    spans += [
        (i, i + 1)
        for i, w in enumerate(said)
        if i not in inside and number_word(w) is not None and str(number_word(w)) not in known
    ]
    return [" ".join(said[start:end]) for start, end in sorted(spans)]


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
