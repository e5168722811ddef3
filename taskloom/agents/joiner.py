"""The joiner: after a plan runs, the large model answers from the results or asks to replan.

As in LLMCompiler, the joiner sees the goal and every step's result. It either
finishes (its `answer` becomes the run's output) or asks for another plan, saying
what is missing; that reason is what the planner is told in the next round. The
number of replans is bounded by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.agents.budget import Budget
from taskloom.agents.prompts import JOIN_SCHEMA, joiner_messages
from taskloom.chat import ChatModel
from taskloom.chat.openai import extract_json
from taskloom.config import Settings
from taskloom.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    """What the joiner decided for one round."""

    action: str  # "finish" or "replan"
    answer: Any = None
    reason: str = ""
    cost_usd: float = 0.0

    def as_record(self) -> dict[str, Any]:
        """The decision as the run record keeps it."""
        return {
            "action": self.action,
            "answer": self.answer,
            "reason": self.reason,
            "cost_usd": self.cost_usd,
        }


class Joiner:
    """Decides, after each round, whether the run is finished.

    Args:
        model: the large model.
        settings: prices.
        budget: the run's budget; a join is one LLM call.
    """

    def __init__(
        self, model: ChatModel, *, settings: Settings | None = None, budget: Budget | None = None
    ) -> None:
        self.model = model
        self.settings = settings if settings is not None else Settings()
        self.budget = budget if budget is not None else Budget()

    def join(
        self,
        goal: str,
        *,
        plan_output: Any,
        steps: Sequence[Mapping[str, Any]],
        can_replan: bool,
    ) -> Decision:
        """Finish with an answer, or ask to replan with a reason.

        A reply that is not a decision finishes with the plan's own output, so a
        confused joiner never loses a result the plan produced.

        Raises:
            BudgetExceededError: no LLM call left for the join.
            EndpointUnavailableError: the endpoint kept failing.
        """
        self.budget.check_llm("joining")
        messages = joiner_messages(
            goal, plan_output=plan_output, steps=steps, can_replan=can_replan
        )
        completion = self.model.complete(messages, schema=JOIN_SCHEMA, max_tokens=512)
        call = self.budget.record_llm("joiner", self.model, completion, self.settings, where="join")
        try:
            reply = json.loads(extract_json(completion.text))
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict) or reply.get("action") not in ("finish", "replan"):
            log.info("join_unclear", reply=completion.text[:200])
            return Decision(
                "finish", plan_output, "the joiner's reply was not a decision", call.cost_usd
            )
        if reply["action"] == "replan" and can_replan:
            reason = str(reply.get("reason") or "the results were not enough")
            log.info("join_replan", reason=reason)
            return Decision("replan", None, reason, call.cost_usd)
        answer = reply.get("answer")
        log.info("join_finish")
        return Decision(
            "finish",
            plan_output if answer is None else answer,
            str(reply.get("reason") or ""),
            call.cost_usd,
        )
