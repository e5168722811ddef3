"""The router: answer a request directly with the SLM, or plan it with the LLM.

As in RouteLLM, a cheap signal estimates how hard a request is, and a threshold
trades cost against quality. The signal mixes:

- the SLM's own judgement: a `classify` step (labels `simple` / `complex`, with a few
  examples) whose confidence comes from token probabilities, not from asking;
- simple features of the request: how many clauses ask for something, connectives
  that order actions ("then", "finally"), quantifiers over several items ("each",
  "three invoices"), length, and whether it is a question.
  The words come from closed classes of English grammar, not from labelled requests.

The two are mixed in log-odds, with weights fitted on a training set of labelled
requests (`benchmarks/data/routing_train.json`) and judged on an evaluation set
written apart from it (`benchmarks/data/routing_eval.json`); see docs/routing.md.

A request whose complexity score is at or above `threshold` is planned by the LLM;
below, it is answered by one SLM step that fits the goal (`agents.direct`). Raising
the threshold sends more to the SLM: cheaper, riskier.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskloom.agents.budget import Budget
from taskloom.chat import ChatModel
from taskloom.config import Settings
from taskloom.logs import get_logger
from taskloom.tools import run_task

log = get_logger(__name__)

LABELS = ["simple", "complex"]

EXAMPLES: list[dict[str, Any]] = [
    {"input": {"text": "Translate 'good morning' into French."}, "output": {"label": "simple"}},
    {
        "input": {
            "text": "Find the three cheapest suppliers, compare their delivery terms, "
            "then draft an email to the best one."
        },
        "output": {"label": "complex"},
    },
    {"input": {"text": "Is this review positive or negative?"}, "output": {"label": "simple"}},
    {
        "input": {
            "text": "For each ticket, extract the order id, look it up, and summarise "
            "which ones need a refund."
        },
        "output": {"label": "complex"},
    },
]

# Closed classes of English grammar, not words picked from labelled requests: connectives
# that order actions, and quantifiers over a collection. Quoted spans are data, not orders.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”")
_SEQUENCE = re.compile(
    r"\b(then|after|afterwards|before|finally|next|once|first|second|later|also|plus)\b",
    re.IGNORECASE,
)
_COLLECTION = re.compile(
    r"\b(each|every|all|both|any)\b|\b(\d+|two|three|four|five|six|seven|eight|nine|ten|"
    r"twelve|twenty|thirty|forty|fifty|hundred|several|many)\s+(\w+\s+)?\w+s\b",
    re.IGNORECASE,
)
_SEGMENT = re.compile(r"[;,:.!?]|\band\b|\bthen\b", re.IGNORECASE)
_QUESTION = re.compile(
    r"^\s*(what|whats|what's|which|who|whose|where|when|is|are|does|do|can|how|"
    r"quick q)\b|\?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    """The router's decision."""

    target: str  # "slm" (answer directly) or "llm" (plan)
    score: float  # estimated complexity, 0..1
    threshold: float
    reason: str
    signals: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def off(cls, reason: str) -> Route:
        """The route of a goal that was not routed: the planner plans it."""
        return cls("llm", 1.0, 1.0, reason)

    def as_record(self) -> dict[str, Any]:
        """The decision as the run record keeps it."""
        return {
            "target": self.target,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "reason": self.reason,
            "signals": self.signals,
        }


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'’-]+", text)


def features(goal: str, inputs: Mapping[str, Any]) -> dict[str, float]:
    """Cheap counts of how many things a request asks for.

    `actions` counts the clauses of three or more words (split at punctuation, "and",
    "then"); `sequence` the connectives that order actions; `collection` the quantifiers
    over several items ("each", "all", "three invoices"); `words` the length in words
    (beyond ten); `question` is 1 for a question (they are mostly lookups). Quoted
    text is left out: it is data. (`inputs` is unused: the training set has one input
    per request, so a count of inputs could not be fitted.)
    """
    text = _QUOTED.sub(" ", goal)
    segments = [seg for seg in _SEGMENT.split(text) if len(_words(seg)) >= 3]
    return {
        "actions": float(max(0, len(segments) - 1)),
        "sequence": float(len(_SEQUENCE.findall(text))),
        "collection": float(len(_COLLECTION.findall(text))),
        "words": float(max(0, len(_words(text)) - 10)),
        "question": 1.0 if _QUESTION.search(text) else 0.0,
    }


FEATURE_WEIGHTS = {
    "actions": 0.73,
    "sequence": 0.67,
    "collection": 0.85,
    "words": 0.21,
    "question": -0.61,
}
FEATURE_BIAS = -2.19
"""Fitted by logistic regression on the training set only (`benchmarks/fit_router.py`,
`benchmarks/data/routing_train.json`); the evaluation set never tuned them."""


def feature_logit(goal: str, inputs: Mapping[str, Any]) -> float:
    """The features' log-odds of complex: their weighted sum."""
    f = features(goal, inputs)
    return FEATURE_BIAS + sum(FEATURE_WEIGHTS[k] * v for k, v in f.items())


def feature_score(goal: str, inputs: Mapping[str, Any]) -> float:
    """P(complex) from the features alone: a logistic of their weighted sum."""
    return _sigmoid(feature_logit(goal, inputs))


SLM_MIX = (0.69, 0.22, -0.12)
"""(features, SLM, bias) weights of the log-odds mix when the SLM's judgement counts;
fitted on the training set with the features' weights fixed (`benchmarks/fit_router.py`)."""


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class Router:
    """Decides, per request, between the SLM alone and LLM planning.

    Args:
        slm: the small model for the `classify` signal; None uses the features alone.
        threshold: complexity at or above which the LLM plans (0..1).
        mix: the (features, SLM, bias) weights of the log-odds mix (`SLM_MIX`).
        settings: prices.
        budget: the router's SLM call is counted against it.
    """

    def __init__(
        self,
        slm: ChatModel | None,
        *,
        threshold: float = 0.5,
        mix: tuple[float, float, float] = SLM_MIX,
        settings: Settings | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.slm = slm
        self.threshold = threshold
        self.mix = mix
        self.settings = settings if settings is not None else Settings()
        self.budget = budget if budget is not None else Budget()

    def slm_signal(self, goal: str) -> tuple[float, dict[str, Any]]:
        """P(complex) from the SLM's `classify`, and what it said."""
        assert self.slm is not None
        outcome = run_task(
            "classify",
            {"text": goal, "labels": LABELS, "examples": EXAMPLES, "max_tokens": 16},
            model=self.slm,
        )
        u = outcome.usage
        cost = self.settings.cost_usd(u.model, u.prompt_tokens, u.completion_tokens)
        self.budget.record_steps(0, cost)
        label, confidence = outcome.value["label"], float(outcome.value["confidence"])
        p_complex = confidence if label == "complex" else 1.0 - confidence
        return p_complex, {"label": label, "confidence": confidence, "cost_usd": cost}

    def route(self, goal: str, inputs: Mapping[str, Any]) -> Route:
        """Score the request and decide."""
        f = features(goal, inputs)
        f_logit = feature_logit(goal, inputs)
        signals: dict[str, Any] = {"features": f, "feature_score": _sigmoid(f_logit)}
        score = _sigmoid(f_logit)
        slm_part = ""
        if self.slm is not None:
            p_complex, said = self.slm_signal(goal)
            signals["slm"] = said
            w_f, w_slm, bias = self.mix
            score = _sigmoid(w_f * f_logit + w_slm * _logit(p_complex) + bias)
            slm_part = f", SLM says {said['label']} ({said['confidence']:.2f})"
        is_llm = score >= self.threshold
        top = max(f.items(), key=lambda kv: abs(FEATURE_WEIGHTS[kv[0]] * kv[1]))
        strongest = f"{top[0]}={top[1]:g}" if top[1] else "none (a short, single request)"
        reason = (
            f"complexity {score:.2f} {'≥' if is_llm else '<'} threshold {self.threshold:.2f}"
            f"{slm_part}; strongest feature: {strongest}"
        )
        route = Route("llm" if is_llm else "slm", score, self.threshold, reason, signals)
        log.info("request_routed", target=route.target, score=round(score, 3))
        return route
