"""Run budgets (dollars, LLM calls, steps) and the ledger of every LLM call.

One `Budget` per run, shared by the planner, the joiner, the router and the
escalating dispatcher (from many threads, hence the lock). Checks happen *before*
spending: an LLM call is refused once the calls or dollars are used up, so a run
stops cleanly at a known place, and `stopped` says which budget and where.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from taskloom.chat import ChatModel, Completion
from taskloom.config import Settings
from taskloom.errors import BudgetExceededError
from taskloom.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class LLMCall:
    """One call to a planning or escalation model, with what it cost."""

    role: str  # planner, joiner, router, escalation
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    run_ms: float
    where: str = ""
    calls: int = 1


def call_cost_usd(model: ChatModel, completion: Completion, settings: Settings) -> float:
    """The price of one completion: LLM prices for an endpoint model, else SLM rates."""
    return settings.cost_usd(
        model.name,
        completion.prompt_tokens,
        completion.completion_tokens,
        is_llm=bool(getattr(model, "is_llm", False)),
    )


@dataclass
class Budget:
    """Limits for one run and what has been spent against them. None means no limit.

    Args:
        max_cost_usd: dollars, LLM and SLM together.
        max_llm_calls: calls to the planning model (planner, joiner, escalations).
        max_steps: steps executed, over every round.
    """

    max_cost_usd: float | None = None
    max_llm_calls: int | None = None
    max_steps: int | None = None
    cost_usd: float = 0.0
    llm_calls: int = 0
    steps: int = 0
    stopped: dict[str, str] | None = None
    calls: list[LLMCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Budget:
        """The limits `settings` set (`max_cost_usd`, `max_llm_calls`)."""
        return cls(max_cost_usd=settings.max_cost_usd, max_llm_calls=settings.max_llm_calls)

    def check_llm(self, where: str, *, is_reserving: bool = False) -> None:
        """Refuse an LLM call once calls or dollars are used up.

        Args:
            where: what is about to call, for the record.
            is_reserving: count the call now (a streamed call, whose cost comes later
                while other calls may start); pass `is_reserved` to `record_llm` then.

        Raises:
            BudgetExceededError: naming the budget and `where`; also kept in `stopped`.
        """
        with self._lock:
            if self.max_llm_calls is not None and self.llm_calls >= self.max_llm_calls:
                self._stop("max_llm_calls", where, f"{self.llm_calls} LLM calls made")
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                self._stop("max_cost_usd", where, f"${self.cost_usd:.6f} spent")
            if is_reserving:
                self.llm_calls += 1

    def restore(self, summary: dict[str, Any] | None) -> Budget:
        """Take back the limits and spending a run's record kept (`RunRecord.budget`), so
        a resumed run goes on under the same budget. In place: the planner, joiner and
        router of the run share this object."""
        if not summary:
            return self
        limits, spent = summary.get("limits", {}), summary.get("spent", {})
        with self._lock:
            self.max_cost_usd = limits.get("max_cost_usd")
            self.max_llm_calls = limits.get("max_llm_calls")
            self.max_steps = limits.get("max_steps")
            self.cost_usd = float(spent.get("cost_usd", 0.0))
            self.llm_calls = int(spent.get("llm_calls", 0))
            self.steps = int(spent.get("steps", 0))
            self.calls = [LLMCall(**c) for c in summary.get("calls", [])]
        return self

    def check_steps(self, count: int, where: str) -> None:
        """Refuse `count` more steps when they would pass `max_steps`, or once the
        dollars are spent (SLM steps cost too)."""
        with self._lock:
            if self.max_steps is not None and self.steps + count > self.max_steps:
                self._stop("max_steps", where, f"{self.steps} steps run, {count} more asked")
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                self._stop("max_cost_usd", where, f"${self.cost_usd:.6f} spent")

    def steps_left(self) -> int | None:
        """How many more steps may run; None without a limit."""
        with self._lock:
            return None if self.max_steps is None else max(0, self.max_steps - self.steps)

    def record_llm(
        self,
        role: str,
        model: ChatModel,
        completion: Completion,
        settings: Settings,
        *,
        where: str = "",
        calls: int = 1,
        is_reserved: bool = False,
    ) -> LLMCall:
        """Count one LLM call (or `calls` summed into `completion`) and its cost."""
        call = LLMCall(
            role=role,
            model=completion.model or model.name,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=call_cost_usd(model, completion, settings),
            run_ms=completion.run_ms,
            where=where,
            calls=calls,
        )
        with self._lock:
            self.llm_calls += 0 if is_reserved else calls
            self.cost_usd += call.cost_usd
            self.calls.append(call)
        log.debug("llm_call_recorded", role=role, cost_usd=call.cost_usd, where=where)
        return call

    def record_steps(self, count: int, cost_usd: float) -> None:
        """Count executed steps and their (SLM) cost."""
        with self._lock:
            self.steps += count
            self.cost_usd += cost_usd

    def _stop(self, budget: str, where: str, spent: str) -> None:
        if self.stopped is None:
            self.stopped = {"budget": budget, "where": where}
        log.info("budget_reached", budget=budget, where=where, spent=spent)
        raise BudgetExceededError(
            f"budget {budget} reached at {where} ({spent}); raise --{budget.replace('_', '-')}",
            budget=budget,
            where=where,
        )

    def summary(self) -> dict[str, Any]:
        """Limits, spending and where it stopped: the run record's `budget`."""
        with self._lock:
            by_role: dict[str, dict[str, float]] = {}
            for c in self.calls:
                role = by_role.setdefault(c.role, {"calls": 0, "cost_usd": 0.0})
                role["calls"] += c.calls
                role["cost_usd"] += c.cost_usd
            return {
                "limits": {
                    "max_cost_usd": self.max_cost_usd,
                    "max_llm_calls": self.max_llm_calls,
                    "max_steps": self.max_steps,
                },
                "spent": {
                    "cost_usd": round(self.cost_usd, 8),
                    "llm_calls": self.llm_calls,
                    "steps": self.steps,
                },
                "llm": by_role,
                "calls": [asdict(c) for c in self.calls],
                "stopped": self.stopped,
            }
