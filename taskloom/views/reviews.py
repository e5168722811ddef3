"""Pending reviews as text: one block each, for `taskloom reviews`."""

from __future__ import annotations

import json
from typing import Any


def format_reviews(found: list[dict[str, Any]]) -> str:
    """Each pending review: run, step, kind, confidence and why, then the proposed value."""
    lines = [] if found else ["no pending reviews"]
    for r in found:
        confidence = r.get("confidence")
        sure = "" if confidence is None else f" confidence {confidence:.2f}"
        lines.append(f"{r['run_id']} {r['step']} ({r['kind']}){sure}: {r['why']}")
        lines.append("  " + json.dumps(r.get("value"), ensure_ascii=False))
    return "\n".join(lines)
