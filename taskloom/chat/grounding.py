"""Grounded text: every id, number or code a model writes must come from its sources.

The `copy` idea applied to free text. A *run* is a stretch such as `A-1042`, `#30981`,
`€84.90`, `14.03.2025`, `5` or `CDL-2023-14`: letters and digits, joined by `-_/.:,`
inside it. A run that carries a digit must be in the source text (the instruction and
the context), bounded there as here: "A-1042" and "1042" are in "order A-1042", but
"A-104" and "B-100" are not. While a run is still being written, it must be the start of
such a piece of the source.

The model host checks each token it is about to emit against this (`allows`) and takes
the model's next choice when a token would invent one; any other chat model's text is
checked after the fact (`invented`), so an invented id is flagged, never shown as fine.
A run with no digit yet that a turned-down token would have carried on stops there
(`halts`): let go on, a small model spells the id it may not write in letters ("order
B-" + "311" turned down became "B-A-A-A-D-D-…" until the token budget ran out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GROUNDING_KEYWORD = "x-grounded-in"
"""A schema keyword (top level) holding the text that ids and numbers must come from."""

RUN = re.compile(r"[#$€£]?[A-Za-z0-9]+(?:[-_/.:,][A-Za-z0-9]+)*%?")
OPEN_RUN = re.compile(r"[A-Za-z0-9]+(?:[-_/.:,][A-Za-z0-9]+)*[-_/.:,]?\Z")
"""The run a text ends in, still open: it may end in a joiner."""
TAIL = 96
"""Characters of the text looked at for each token: runs are short."""


def _bounded(piece: str) -> str:
    return r"(?<![A-Za-z0-9])" + re.escape(piece)


@dataclass
class Grounding:
    """The source a text's runs must come from (module doc)."""

    source: str
    _seen: dict[tuple[str, bool], bool] = field(default_factory=dict, repr=False)

    def _in_source(self, run: str, *, is_whole: bool) -> bool:
        key = (run, is_whole)
        found = self._seen.get(key)
        if found is None:
            pattern = _bounded(run) + (r"(?![A-Za-z0-9])" if is_whole else "")
            found = re.search(pattern, self.source) is not None
            self._seen[key] = found
        return found

    def allows(self, text: str, piece: str) -> bool:
        """Whether appending `piece` to `text` keeps every run with a digit grounded."""
        start = max(0, len(text) - TAIL)
        new = text[start:] + piece
        edge = len(new) - len(piece)  # where the piece begins
        for m in RUN.finditer(new):
            if m.end() < edge - 1:
                continue  # closed before this piece, and checked then
            run = m.group()
            if m.start() and new[m.start() - 1] == "\\":
                # A JSON escape's letters (\n, \u2013) write no id. Held to the source,
                # \u + "2" was turned down, and the model's next picks spelled \ufcbc + "e"
                # + \ufcbc…: characters of no language, in a reply.
                run = run[5:] if run[:1] == "u" else run[1:]
            if not any(c.isdigit() for c in run):
                continue
            # A run at the very end (or before a trailing joiner) may still grow: it need
            # only start a piece of the source. A closed one must be a whole piece.
            is_open = m.end() == len(new) or (m.end() == len(new) - 1 and new[-1] in "-_/.:,")
            if not self._in_source(run, is_whole=not is_open):
                return False
        return True

    def invented(self, text: str) -> list[str]:
        """The runs with a digit in a finished text that its source does not have."""
        return [
            m.group()
            for m in RUN.finditer(text)
            if any(c.isdigit() for c in m.group()) and not self._in_source(m.group(), is_whole=True)
        ]


def continues(piece: str) -> bool:
    """Whether `piece` would carry on a run the text ends in, rather than close it."""
    return piece[:1].isalnum() or piece[:1] in "-_/"


def halts(text: str, piece: str) -> bool:
    """Whether turning `piece` down stops the run `text` ends in (module doc): a run
    with no digit yet that `piece` would have carried on."""
    m = OPEN_RUN.search(text)
    return m is not None and not any(c.isdigit() for c in m.group()) and continues(piece)
