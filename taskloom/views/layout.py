"""Where each step of a plan graph goes: layers, an order within each, and a grid.

- A step's layer is the length of the longest dependency chain that leads to it, so
  edges point left to right.
- Within each layer, steps are ordered to cross fewer edges: barycentre sweeps, down
  then up, each step placed at the mean position of its neighbours in the layer before
  (the Sugiyama heuristic). The order with the fewest crossings is kept, so a sweep
  never makes it worse than the order the steps were added in.
- An edge that skips layers gets a waypoint in each layer between (a dummy node, ordered
  like the steps), so it is drawn through free cells, never behind a box.
- A layer taller than `max_rows` wraps into several columns, so a flat fan-out of many
  steps draws as a grid instead of one column that pushes the rest off the screen.

Pure functions on ids and edges: deterministic, and tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

Edge = tuple[str, str]  # (dependency, step)

MIN_ROWS = 6
SWEEPS = 4


@dataclass(frozen=True)
class Layout:
    """Grid cells: `cells[id] = (column, row)`; `rows` is the tallest column's height.

    An edge that skips layers passes through a free cell of each layer in between
    (`routes[(dependency, step)]`, in order), so it never runs behind a box. `spans`
    maps each column to the first and last column of its layer (a wrapped layer has
    several).
    """

    cells: dict[str, tuple[int, int]]
    columns: int
    rows: int
    column_rows: dict[int, int]  # how many cells each column holds
    routes: dict[Edge, list[tuple[int, int]]]
    spans: dict[int, tuple[int, int]]


def layers(ids: Sequence[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Steps by layer, each layer in the order the steps were given (dependencies first)."""
    deps: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        if a in deps and b in deps:
            deps[b].append(a)
    level: dict[str, int] = {}
    for i in ids:  # ids come in an order where dependencies come first
        level[i] = 1 + max((level.get(d, -1) for d in deps[i]), default=-1)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for i in ids:
        out[level[i]].append(i)
    return out


def crossings(order: Sequence[Sequence[str]], edges: Iterable[Edge]) -> int:
    """Edge crossings between layers, for steps at these positions in their layers.

    Two edges between the same pair of layers cross when their ends are in opposite
    orders; an edge that skips layers is counted against the others of its pair.
    """
    where = {s: (li, pos) for li, layer in enumerate(order) for pos, s in enumerate(layer)}
    by_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a, b in edges:
        if a in where and b in where:
            (la, pa), (lb, pb) = where[a], where[b]
            by_pair.setdefault((la, lb), []).append((pa, pb))
    total = 0
    for pairs in by_pair.values():
        pairs.sort()
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                if a1 != a2 and b2 < b1:
                    total += 1
    return total


def barycentre_order(order: list[list[str]], edges: Sequence[Edge]) -> list[list[str]]:
    """Reorder each layer to cross fewer edges; never worse than `order` itself."""
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
        succs.setdefault(a, []).append(b)
    best = [list(layer) for layer in order]
    best_count = crossings(best, edges)
    current = [list(layer) for layer in order]
    for _ in range(SWEEPS):
        if best_count == 0:
            break
        for li in range(1, len(current)):  # down: by the layers before
            current[li] = _by_mean(current[li], preds, _positions(current[:li]))
        for li in range(len(current) - 2, -1, -1):  # up: by the layers after
            current[li] = _by_mean(current[li], succs, _positions(current[li + 1 :]))
        count = crossings(current, edges)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best


def _positions(layers_: Sequence[Sequence[str]]) -> dict[str, float]:
    return {s: float(pos) for layer in layers_ for pos, s in enumerate(layer)}


def _by_mean(layer: list[str], links: dict[str, list[str]], pos: dict[str, float]) -> list[str]:
    """A layer sorted by the mean position of each step's neighbours; a step with none
    keeps its place (ties keep the current order: the sort is stable)."""
    keys = []
    for index, s in enumerate(layer):
        near = [pos[n] for n in links.get(s, []) if n in pos]
        keys.append(sum(near) / len(near) if near else float(index))
    ranked = sorted(range(len(layer)), key=lambda i: keys[i])
    return [layer[i] for i in ranked]


def max_rows(n: int) -> int:
    """The tallest a column gets: about the square root of the step count, at least 6."""
    return max(MIN_ROWS, math.ceil(math.sqrt(max(n, 1))))


def grid(ids: Sequence[str], edges: Sequence[Edge]) -> Layout:
    """Cells for every step: layered, ordered by barycentre, tall layers wrapped."""
    edges = list(dict.fromkeys(edges))
    order, chained, via = _with_waypoints(layers(ids, edges), edges)
    ordered = barycentre_order(order, chained)
    rows_cap = max_rows(len(ids))
    cells: dict[str, tuple[int, int]] = {}
    column_rows: dict[int, int] = {}
    spans: dict[int, tuple[int, int]] = {}
    column = 0
    for layer in ordered:
        first = column
        for start in range(0, len(layer), rows_cap):
            chunk = layer[start : start + rows_cap]
            for row, s in enumerate(chunk):
                cells[s] = (column, row)
            column_rows[column] = len(chunk)
            column += 1
        for c in range(first, column):
            spans[c] = (first, column - 1)
    routes = {edge: [cells.pop(w) for w in points] for edge, points in via.items()}
    return Layout(
        cells=cells,
        columns=column,
        rows=max(column_rows.values(), default=0),
        column_rows=column_rows,
        routes=routes,
        spans=spans,
    )


def _with_waypoints(
    order: list[list[str]], edges: Sequence[Edge]
) -> tuple[list[list[str]], list[Edge], dict[Edge, list[str]]]:
    """Layers with a waypoint in each layer an edge skips, the edges through them, and
    each long edge's waypoints (Sugiyama's dummy nodes)."""
    level = {s: li for li, layer in enumerate(order) for s in layer}
    out = [list(layer) for layer in order]
    chained: list[Edge] = []
    via: dict[Edge, list[str]] = {}
    for a, b in edges:
        if a not in level or b not in level:
            continue
        if level[b] - level[a] <= 1:
            chained.append((a, b))
            continue
        points = [f"\0{a}>{b}@{li}" for li in range(level[a] + 1, level[b])]
        for li, w in zip(range(level[a] + 1, level[b]), points, strict=True):
            out[li].append(w)
        path = [a, *points, b]
        chained.extend(pairwise(path))
        via[(a, b)] = points
    return out, chained, via
