"""The router: features, the SLM signal and the threshold (direct plans: test_direct.py)."""

from __future__ import annotations

from collections.abc import Sequence

from taskloom.agents import Budget, Router
from taskloom.agents.router import feature_score, features
from taskloom.chat import Message, ScriptedChatModel

SIMPLE = "Translate 'good night' into Italian."
COMPLEX = (
    "For each open invoice, extract the total, compare it with the purchase order, "
    "then draft a note to the supplier listing every mismatch."
)


def test_features_separate_one_step_from_multi_step_requests() -> None:
    assert feature_score(SIMPLE, {}) < 0.2 < 0.8 < feature_score(COMPLEX, {})


def test_features_count_grammar_not_fitted_words() -> None:
    f = features(COMPLEX, {})
    assert f["sequence"] == 1  # "then"
    assert f["collection"] == 2  # "each", "every"
    assert f["actions"] >= 2
    # quoted text is data: its "then" and "each" order nothing
    quoted = features("Translate 'first this, then each of those' into Welsh.", {})
    assert quoted["sequence"] == quoted["collection"] == quoted["actions"] == 0
    assert features("What is the capital of Peru?", {})["question"] == 1


def test_threshold_trades_cost_for_quality() -> None:
    middling = "Summarise the attached notes and list the action items."
    decisions = [Router(None, threshold=t).route(middling, {}).target for t in (0.05, 0.95)]
    assert decisions == ["llm", "slm"]  # a higher threshold sends more to the SLM


def test_slm_signal_counts_and_is_recorded() -> None:
    # This SLM finds the request itself complex (not the content-free calibration inputs).
    class Contrary(ScriptedChatModel):
        def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
            is_request = "Italian" in messages[-1]["content"]
            return [-0.1 if is_request and "complex" in c else -3.0 for c in continuations]

    slm = Contrary()
    budget = Budget()
    route = Router(slm, threshold=0.3, mix=(1.0, 1.0, 0.0), budget=budget).route(SIMPLE, {})
    assert route.signals["slm"]["label"] == "complex"
    assert route.target == "llm" and "SLM says complex" in route.reason
    # with the fitted mix it still raises the score above the features' own
    assert Router(slm).route(SIMPLE, {}).score > feature_score(SIMPLE, {})
    assert budget.llm_calls == 0  # the router's call is an SLM call
