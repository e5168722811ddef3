"""Route requests: the small model answers simple ones, the LLM plans the complex ones.

Run it:  python examples/router.py             (the default model's judgement + features)
         python examples/router.py scripted    (the shipped fake: no model needed)

`taskloom run --goal` routes every goal this way before it plans (`--route-threshold`,
`--no-route`); this shows the decision on its own, with its reasons.
"""

from __future__ import annotations

import sys
from typing import Any

from taskloom import Router, Settings
from taskloom.chat import load_model

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("Is this review positive or negative?", {"review": "Loved it, would buy again."}),
    ("Translate this sentence into French.", {"text": "The parcel arrived this morning."}),
    (
        "For each ticket, extract the order id, look it up, compare the delivery dates "
        "with our promise, then draft a reply to every customer whose order is late.",
        {"tickets": ["...", "..."], "promise_days": 5},
    ),
]


def route_all(model: str | None = None, *, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Each request's route: `slm` (answered directly) or `llm` (planned), and why."""
    slm = load_model(Settings(model=model))
    router = Router(slm, threshold=threshold)
    out = []
    for goal, inputs in REQUESTS:
        route = router.route(goal, inputs)
        out.append({"goal": goal, **route.as_record()})
    return out


if __name__ == "__main__":
    for row in route_all(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{row['target']:>3}  {row['score']:.2f}  {row['goal'][:60]}")
        print(f"     {row['reason']}")
