"""The plan graph's layout: layers, barycentre ordering, and wide layers as a grid."""

from __future__ import annotations

from taskloom.views import layout


def fan_out(n: int) -> tuple[list[str], list[layout.Edge]]:
    ids = ["root"] + [f"f{i}" for i in range(n)]
    return ids, [("root", f"f{i}") for i in range(n)]


def test_a_fan_out_of_16_wraps_into_a_grid_of_bounded_height() -> None:
    ids, edges = fan_out(16)
    placed = layout.grid(ids, edges)
    fan_columns = {placed.cells[i][0] for i in ids[1:]}
    assert len(fan_columns) >= 3  # not one column of 16
    assert placed.rows <= 6
    assert all(placed.cells[i][0] > placed.cells["root"][0] for i in ids[1:])  # edges go right
    assert sorted(placed.cells.values()) == sorted(set(placed.cells.values()))  # no overlap


def test_a_chain_is_one_row_and_small_graphs_do_not_wrap() -> None:
    ids = [f"s{i}" for i in range(5)]
    placed = layout.grid(ids, [(ids[i], ids[i + 1]) for i in range(4)])
    assert [placed.cells[i] for i in ids] == [(c, 0) for c in range(5)]
    ids, edges = fan_out(5)
    assert layout.grid(ids, edges).columns == 2


def crafted() -> tuple[list[str], list[layout.Edge]]:
    """Three layers wired so that the order the steps were added in crosses a lot."""
    ids = ["a", "b", "c", "d", "p", "q", "r", "s", "w", "x", "y", "z"]
    edges = [
        ("a", "s"),
        ("b", "r"),
        ("c", "q"),
        ("d", "p"),
        ("a", "r"),
        ("p", "z"),
        ("q", "y"),
        ("r", "x"),
        ("s", "w"),
    ]
    return ids, edges


def test_barycentre_reduces_crossings_against_the_given_order() -> None:
    ids, edges = crafted()
    given = layout.layers(ids, edges)
    assert given == [["a", "b", "c", "d"], ["p", "q", "r", "s"], ["w", "x", "y", "z"]]
    before = layout.crossings(given, edges)
    ordered = layout.barycentre_order(given, edges)
    after = layout.crossings(ordered, edges)
    assert before == 14 and after == 0
    assert [sorted(layer) for layer in ordered] == [sorted(layer) for layer in given]
    assert layout.barycentre_order(given, edges) == ordered  # deterministic


def test_barycentre_never_makes_an_order_worse() -> None:
    # Already crossing-free: kept as it is.
    ids = ["a", "b", "x", "y"]
    edges = [("a", "x"), ("b", "y")]
    given = layout.layers(ids, edges)
    assert layout.barycentre_order(given, edges) == given
    # A complete bipartite graph crosses the same in every order.
    ids = ["a", "b", "c", "x", "y", "z"]
    edges = [(u, v) for u in "abc" for v in "xyz"]
    given = layout.layers(ids, edges)
    ordered = layout.barycentre_order(given, edges)
    assert layout.crossings(ordered, edges) <= layout.crossings(given, edges)


def test_crossings_counts_pairs_of_edges_in_opposite_orders() -> None:
    order = [["a", "b"], ["x", "y"]]
    assert layout.crossings(order, [("a", "y"), ("b", "x")]) == 1
    assert layout.crossings(order, [("a", "x"), ("b", "y")]) == 0
    assert layout.crossings(order, [("a", "x"), ("a", "y")]) == 0  # shared end: no crossing


def test_500_steps_fit_a_bounded_grid() -> None:
    ids = [f"s{i}" for i in range(500)]
    edges = [(f"s{i - 1}", f"s{i}") for i in range(500) if i % 10]
    placed = layout.grid(ids, edges)
    assert len(placed.cells) == 500
    assert placed.rows == layout.max_rows(500) == 23
    assert placed.columns == 30  # ten layers of 50, three columns each


def test_an_edge_that_skips_a_layer_passes_a_free_cell_of_it() -> None:
    ids = ["contact", "intent", "booking", "docs", "reply"]
    edges = [("intent", "docs"), ("contact", "reply"), ("docs", "reply"), ("booking", "reply")]
    placed = layout.grid(ids, edges)
    assert set(placed.routes) == {("contact", "reply"), ("booking", "reply")}
    through = [cell for cells in placed.routes.values() for cell in cells]
    assert [c for c, _ in through] == [1, 1]  # the docs layer
    assert placed.cells["docs"] not in through and len(set(through)) == 2
    assert placed.column_rows[1] == 3  # the waypoints take cells: docs sits between them
