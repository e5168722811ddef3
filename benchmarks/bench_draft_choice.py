"""What to draft: which span, where the value so far occurs at several places of the input,
and how long prompt lookup's drafts may be on a CPU.

    python benchmarks/bench_draft_choice.py [--sets all|quick]

Once a copied value has started ("A", "Mar"), the drafter (`taskloom/chat/llama/
speculate.py`) drafts the rest of the input span it could still be. The text so far
may occur at several places of the prompt (the instruction, the examples, the input),
with different continuations. Which one to draft:

- `last`: the last place in the prompt (the input comes after the examples), as
  shipped before this benchmark;
- `first`: the first place;
- `longest`: the place whose likely span (`span_end`) runs longest, the latest of
  equals;
- `input`: the last place within the last message (the input), else `last`;
- `tree`: every distinct continuation (up to 4), verified together as branches of
  one decode, each drafted token a row: the draft accepted is the longest.

And one rule beside them: at a value's start, before its first token, and inside a
number or a null, nothing is drafted (as shipped); `longest, lookup at a value's start`
drafts there by prompt lookup, as `last, lookup at a value's start` does: the drafter as
it was before this benchmark, which the ratios divide by. These drafts are up to
`MAX_DRAFT` tokens of every kind; as shipped, `longest` with prompt lookup sized to the
device (`lookup_limit`: 2 tokens on a CPU) replays the drafter the host used.

A reply (`generate`) is text that is not copied as a whole, so it is drafted by prompt
lookup alone. `longest, lookup sized to the device, id runs` drafts besides, once a
reply has begun an id or a number (a grounding run with a digit: "#A-5"), the rest of
it from the input ("5120" of "#A-55120"), up to `MAX_DRAFT` tokens where lookup drafts
2 on a CPU; one character pins it, where lookup needs the tokens before it to match.
Not shipped: it is measured here.

The "most likely" place needs the model's probabilities of the candidates' tokens,
which is what verifying them computes: the tree is that choice.

Real: the default GGUF model generates every extraction step of the sets of
`bench_speculate.py`, and `bench_grounding`'s 20 reply tasks (`generate`, grounded),
greedily on one idle host with speculation on, and the drafter each
generation used (its prompt, input and the answer template it had learned) is kept.
Replayed, not decoded: each strategy's drafts against the tokens generated. Greedy
outputs are the same whatever the draft (`bench_speculate.py` checks it), so a draft's
accepted length, and the decodes and rows of the generation, follow exactly from the
output. A replayed draft is sized as on the idle host (up to
`MAX_DRAFT` tokens) and the tree's branches share its rows where their tokens agree.
A row costs about 7.6 ms and a decode 10.4 ms besides on 2 cores (docs/batching.md):
`modelled time` weighs them so; on a GPU the decodes are what cost.

One choice is timed as well, on a CPU, how long prompt lookup's drafts may be: every
step generated again with lookup up to `MAX_DRAFT` tokens and up to the shipped size,
back to back, only the generation timed, and `bench_grounding`'s 20 reply tasks too
(`generate`, drafted by lookup alone). Time is divided by the tokens generated: a reply
generated twice in a row can differ in its last bits (its prompt was cached by another
decode, and a re-ask samples), whatever the drafts.

It prints, per strategy, decodes and rows (one per evaluated token: the picked one and
each drafted), and the ratios to the drafter before, apart for each group of sets: the quick sets
(where the span's place was chosen), the eval sets (`--sets all`: they report that
choice, and the value-start rule and lookup's size were chosen on them), and
`fresh_extract.json` with `copy: true` (`--sets all`), on which none was chosen, and
the replies.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import results
from bench_grounding import reply_inputs
from bench_speculate import copy_steps, extract, text_sets

from taskloom.chat import Message
from taskloom.chat.gpu import placement
from taskloom.chat.grounding import OPEN_RUN, RUN, TAIL, _bounded
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.llama.speculate import MAX_DRAFT, SPAN_CHARS, Drafter, _Scanner, span_end
from taskloom.chat.load import default_model_path
from taskloom.config import Settings
from taskloom.tools import run_task

BEFORE = "last, lookup at a value's start"
STRATEGIES = [
    BEFORE,
    "last",
    "first",
    "longest",
    "input",
    "tree",
    "longest, lookup at a value's start",
    "longest, lookup sized to the device",
    "longest, lookup sized to the device, id runs",
]
TREE_WIDTH = 4
SHIPPED = "longest, lookup sized to the device"
ID_RUNS = "longest, lookup sized to the device, id runs"
DECODE_MS, ROW_MS = 10.4, 7.6
"""On 2 CPU cores, a decode's cost besides its rows and a row's (docs/batching.md)."""
QUICK = {"held-out style (24)", "tune split (8)", "kinds' test texts (11)"}
"""`bench_speculate`'s quick sets, where the span's place was chosen; its eval sets
report that, and are where drafting nothing at a value's start was chosen."""
FRESH = "fresh_extract, copy (60)"
"""Written by another hand in other voices; neither choice was made on it."""
REPLIES = "replies, generate (20)"
"""`bench_grounding`'s reply tasks, timed only: `generate` drafts by prompt lookup alone."""
REPLIES_DATA = Path(__file__).parent / "data" / "replies.json"
Steps = dict[str, list[Callable[[], Any]]]
"""Per set, its steps, each run on the host when called."""


@dataclass
class Generation:
    """One generation as the host ran it: its drafter, the tokens it picked, and the
    host's own count of its decodes (to check the replay against)."""

    drafter: Drafter
    tokens: list[int]
    input: str  # the last message: the step's input
    decodes: int
    set: str
    lookup_limit: int  # as the host sized prompt lookup


def record_generations(host: ModelHost, sets: Steps) -> list[Generation]:
    """Run every step once on `host`, keeping each generation's drafter and tokens
    (`sets`' steps run on `host`)."""
    kept: list[Generation] = []
    made: list[tuple[Drafter, str]] = []
    running = [""]  # the set of the step running
    make_drafter = host._templates.drafter
    generate = host._decoder.generate

    def drafter(messages: Sequence[Message], prompt: Sequence[int], schema: Any) -> Drafter:
        d = make_drafter(messages, prompt, schema)
        made.append((d, messages[-1]["content"]))
        return d

    def generated(prompt: Sequence[int], **kwargs: Any) -> Any:
        out = generate(prompt, **kwargs)
        d, text = made[-1]
        kept.append(Generation(d, list(out.tokens), text, out.decodes, running[0], d.lookup_limit))
        return out

    host._templates.drafter = drafter  # type: ignore[method-assign]
    host._decoder.generate = generated  # type: ignore[method-assign]
    try:
        for name, steps in sets.items():
            running[0] = name
            for step in steps:
                step()
    finally:
        del host._templates.drafter, host._decoder.generate  # the class's own again
    return kept


def time_lookup_limits(
    host: ModelHost, groups: dict[str, list[Callable[[], Any]]], limits: Sequence[int]
) -> dict[str, list[tuple[float, int]]]:
    """Per group of steps, the seconds `host` spent generating and the tokens it generated
    with prompt lookup drafting up to each of `limits` tokens: every step once per limit,
    back to back, the order turned round from one step to the next (the second run finds
    more of the prompt cached). Only the generation is timed, not the review."""
    spent = {group: [(0.0, 0)] * len(limits) for group in groups}
    at = ["", 0]  # the group and the limit running
    generate = host._decoder.generate

    def timed(prompt: Sequence[int], **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = generate(prompt, **kwargs)
        seconds, tokens = spent[at[0]][at[1]]
        spent[at[0]][at[1]] = (seconds + time.perf_counter() - started, tokens + len(out.tokens))
        return out

    host._decoder.generate = timed  # type: ignore[method-assign]
    shipped = host._templates._lookup_limit
    try:
        for group, steps in groups.items():
            at[0] = group
            for n, step in enumerate(steps):
                for i in range(len(limits))[:: -1 if n % 2 else 1]:
                    at[1] = i
                    host._templates._lookup_limit = limits[i]
                    step()
    finally:
        del host._decoder.generate
        host._templates._lookup_limit = shipped
    return spent


def replies(host: ModelHost) -> list[Callable[[], Any]]:
    """`bench_grounding`'s reply tasks as `generate` steps on `host`: a kind that drafts by
    prompt lookup alone."""
    cases = json.loads(REPLIES_DATA.read_text())["cases"]
    return [partial(run_task, "generate", reply_inputs(c), model=host) for c in cases]


def modelled_ms(totals: Sequence[int]) -> float:
    """A generation's time on 2 CPU cores from its decodes and rows (`DECODE_MS`)."""
    return totals[0] * DECODE_MS + totals[1] * ROW_MS


def group_of(set_name: str) -> str:
    if set_name == REPLIES:
        return "replies"
    return "quick sets" if set_name in QUICK else "fresh set" if set_name == FRESH else "eval sets"


def candidates(
    d: Drafter, typed: str, key: str | None, strategy: str, input_text: str
) -> list[str]:
    """The texts a strategy drafts inside a string value that reads `typed` so far."""
    source = d._source
    places = []
    at = source.find(typed)
    while at >= 0:
        places.append(at)
        at = source.find(typed, at + 1)
    closing = d._template.get(key)

    def text_at(at: int) -> str:
        rest = source[at + len(typed) : at + len(typed) + SPAN_CHARS]
        return rest if closing is None else span_end(rest) + '"' + closing

    if not places:
        return []
    if strategy.startswith("last"):
        return [text_at(places[-1])]
    if strategy == "first":
        return [text_at(places[0])]
    if strategy.startswith("longest"):  # the drafter's own choice
        return [d._span_after(typed, closing)]
    if strategy == "input":
        start = source.rfind(input_text)
        inside = [p for p in places if start >= 0 and p >= start]
        return [text_at((inside or places)[-1])]
    distinct: list[str] = []
    for p in reversed(places):  # the last place first, as `last` drafts it
        if (t := text_at(p)) not in distinct:
            distinct.append(t)
    return distinct[:TREE_WIDTH]


def drafts(g: Generation, text: str, out: Sequence[int], strategy: str) -> list[list[int]]:
    """The drafts a strategy proposes after `out`, which spells `text` (several: a tree)."""
    d = g.drafter
    scanner = _Scanner()
    scanner.feed(text)
    where = scanner.where()
    if d._template and where is not None and where.in_value:
        if where.is_string and where.typed:
            texts = [t for t in candidates(d, where.typed, where.key, strategy, g.input) if t]
            if texts:
                return [d._tokenize(t)[:MAX_DRAFT] for t in texts]
        elif strategy.endswith("lookup at a value's start"):
            return [d._lookup.propose(out, MAX_DRAFT)]
        rest = id_run_rest(d._source, where.typed) if strategy == ID_RUNS else ""
        if rest and where.is_string:
            return [d._tokenize(rest)[:MAX_DRAFT]]
    return [d.propose(out, text.encode(), MAX_DRAFT)]


def replay(g: Generation, strategy: str, piece: Callable[[int], bytes]) -> tuple[int, int, int]:
    """Decodes, rows and accepted drafted tokens of one generation under a strategy."""
    tokens = g.tokens
    g.drafter.lookup_limit = g.lookup_limit if strategy in (SHIPPED, ID_RUNS) else MAX_DRAFT
    done = 1  # the prompt's decode picked the first token
    decodes, rows, accepted = 0, 0, 0  # the decodes after the prompt
    while done < len(tokens):
        text = b"".join(piece(t) for t in tokens[:done]).decode("utf-8", errors="ignore")
        proposals = [p for p in drafts(g, text, tokens[:done], strategy) if p] or [[]]
        best = max(_common(p, tokens[done:]) for p in proposals)
        branches = {tuple(p[: i + 1]) for p in proposals for i in range(len(p))}
        decodes += 1
        rows += 1 + len(branches)  # the last picked token, and each drafted one
        accepted += best
        done += best + 1
    return decodes, rows, accepted


def id_run_rest(source: str, typed: str) -> str:
    """The rest of the id or number (a grounding run with a digit) that `typed` ends in,
    from where it occurs in `source`: "5120" after "Your order #A-5" with "#A-55120" in
    the source; of several places, the longest, the latest of equals."""
    m = OPEN_RUN.search(typed[-TAIL:])
    if m is None:
        return ""
    run, best = m.group(), ""
    for place in re.finditer(_bounded(run), source):
        whole = RUN.match(source, place.start())
        if whole is None or not any(c.isdigit() for c in whole.group()):
            continue
        if len(rest := whole.group()[len(run) :]) >= len(best):
            best = rest
    return best


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="all", choices=["all", "quick"])
    args = parser.parse_args()
    gpu, n_gpu_layers = placement(Settings.from_env())
    host = ModelHost(default_model_path(), gpu=gpu, n_gpu_layers=n_gpu_layers, speculate=True)
    pieces: dict[int, bytes] = {}

    def piece(t: int) -> bytes:
        if t not in pieces:
            pieces[t] = host._decoder.piece(t)
        return pieces[t]

    texts = text_sets(args.sets)
    if args.sets == "all":
        texts[FRESH] = copy_steps("fresh_extract")
    sets: Steps = {
        name: [partial(extract, host, inputs, schema) for inputs, schema in steps]
        for name, steps in texts.items()
    }
    sets[REPLIES] = replies(host)
    generations = record_generations(host, sets)
    same = sum(replay(g, SHIPPED, piece)[0] == g.decodes for g in generations)
    print(
        f"{len(generations)} generations, {sum(len(g.tokens) for g in generations)} tokens;"
        f" the replay of `{SHIPPED}` gives the host's own decode count for {same} of them"
    )
    rows_out = [
        results.Row(
            what=f"copy-span draft choice: generations whose replayed decodes (`{SHIPPED}`,"
            " as shipped) equal the host's own count",
            measured=f"{same}/{len(generations)}",
            target="all",
            met=same == len(generations),
        )
    ]
    groups: dict[str, list[Generation]] = {}
    for g in generations:
        groups.setdefault(group_of(g.set), []).append(g)
    measured: dict[str, list[str]] = {strategy: [] for strategy in STRATEGIES}
    modelled: dict[str, float] = {}  # per group, shipped ÷ `longest` (lookup not sized)
    for group, members in groups.items():
        tokens = sum(len(g.tokens) for g in members)
        print(f"{group}: {len(members)} generations, {tokens} tokens")
        totals: dict[str, tuple[int, ...]] = {}
        for strategy in STRATEGIES:
            counts = [replay(g, strategy, piece) for g in members]
            totals[strategy] = tuple(sum(c[i] for c in counts) for i in range(3))
        base_decodes, base_rows, _ = totals[BEFORE]
        for strategy, (decodes, rows, accepted) in totals.items():
            ms = modelled_ms((decodes, rows)) / modelled_ms(totals[BEFORE])
            print(
                f"  {strategy:36} decodes {decodes:5} ({decodes / base_decodes:.3f} of before)"
                f"  rows {rows:6} ({rows / base_rows:.3f})  modelled time {ms:.3f}"
                f"  drafted tokens accepted {accepted}"
            )
            measured[strategy].append(
                f"{group} {decodes / base_decodes:.3f} / {rows / base_rows:.3f} / {ms:.3f}"
                f" ({decodes} / {rows})"
            )
        modelled[group] = modelled_ms(totals[SHIPPED]) / modelled_ms(totals["longest"])
    described = ", ".join(f"{group} {len(members)}" for group, members in groups.items())
    for strategy in STRATEGIES[1:]:
        rows_out.append(
            results.Row(
                what=f"copy-span drafts, `{strategy}`"
                + (" (as shipped)" if strategy == SHIPPED else "")
                + f": decodes / rows / modelled CPU time ÷ those of `{BEFORE}` (as before)"
                f" (generations: {described})",
                measured="; ".join(measured[strategy]),
                target="reported",
                met=None,
            )
        )
    shipped_limit = host._templates._lookup_limit
    if shipped_limit < MAX_DRAFT:  # on a CPU: time what sizing prompt lookup saves
        steps: dict[str, list[Callable[[], Any]]] = {}
        for name, calls in sets.items():
            steps.setdefault(group_of(name), []).extend(calls)
        spent = time_lookup_limits(host, steps, [MAX_DRAFT, shipped_limit])
        timed = {
            group: (after[0] / after[1]) / (before[0] / before[1])
            for group, (before, after) in spent.items()
        }
        shown = ", ".join(
            f"{g} {r:.3f}" + (f" (modelled {modelled[g]:.3f})" if g in modelled else "")
            for g, r in timed.items()
        )
        print(
            f"generation time a token, prompt lookup up to {shipped_limit} tokens ÷ up to"
            f" {MAX_DRAFT}, each step back to back on this host: {shown}"
        )
        rows_out.append(
            results.Row(
                what=f"copy-span drafts: generation time a token with prompt lookup drafting"
                f" up to {shipped_limit} tokens (as shipped on a CPU) ÷ up to {MAX_DRAFT},"
                " measured (modelled from decodes and rows)",
                measured=shown.replace("modelled ", ""),
                target="reported",
                met=None,
            )
        )
    results.record(
        "bench_draft_choice" if args.sets == "all" else "bench_draft_choice_quick",
        real="the default GGUF model's greedy extraction outputs on bench_speculate's sets (and"
        " fresh_extract.json) and bench_grounding's 20 replies, and the drafter (prompt,"
        " input, answer template) each used",
        simulated="the verify loop: each strategy's drafts replayed against the generated"
        " tokens (exact for greedy outputs, which do not depend on the draft), timed only"
        " for prompt lookup's size",
        rows=rows_out,
    )


if __name__ == "__main__":
    main()
