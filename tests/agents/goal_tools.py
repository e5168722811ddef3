"""Tools for the goal CLI tests."""

from __future__ import annotations

from taskloom.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
