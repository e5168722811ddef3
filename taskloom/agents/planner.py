"""The planner: goal + inputs + the catalogue of kinds and tools → a validated Plan.

A plan that fails validation goes back to the model with every problem, a bounded
number of times (`Settings.plan_repairs`), then planning fails with every problem
listed. `Planner.stream` yields each step the moment its JSON object is complete, so
a run can dispatch it while the rest of the plan is still arriving.

The prompt shows the example plans nearest the goal (`agents.examples`), not one
fixed example. When the local SLM plans (`is_local`, `--local-planner`), its reply is
constrained to the planning schema, so it parses, and a valid plan must also be about
its goal (`agents.grounding`: it reads the goal's inputs, its output answers the
goal, it is not an example); each failure is a named problem for the repair loop.
A local plan still invalid after the repairs falls back to a one-step plan
(`fallback`: by default a `generate` step on the goal), valid by construction, and
says so in `last_fallback`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from taskloom.agents.budget import Budget
from taskloom.agents.examples import nearest
from taskloom.agents.grounding import grounding_problems
from taskloom.agents.prompts import SLM_KIND_NAMES, plan_schema, planner_messages, repair_messages
from taskloom.agents.stepstream import StepScanner
from taskloom.chat import ChatModel, Completion, Message
from taskloom.chat.openai import extract_json
from taskloom.config import Settings
from taskloom.errors import InputError, PlanValidationError
from taskloom.logs import get_logger
from taskloom.plan import STEP_ID, Plan, Step, StepKind
from taskloom.tools import ToolRegistry
from taskloom.tools.checks import load_plan

log = get_logger(__name__)

PLAN_MAX_TOKENS = 2048


def check_goal(goal: str) -> None:
    """Raise InputError for an empty goal: there is nothing to plan."""
    if not goal.strip():
        raise InputError("the goal is empty; pass --goal with what the run should achieve")


def check_plan(
    data: Any,
    *,
    tools: ToolRegistry,
    inputs: Mapping[str, Any] | None,
    max_steps: int,
    source: str,
) -> Plan:
    """`load_plan`, plus the checks that need the run: tools registered, inputs present.

    Raises:
        PlanValidationError: every problem at once.
    """
    problems: list[str] = []
    try:
        plan = load_plan(data, source=source, max_steps=max_steps, inputs=inputs)
    except PlanValidationError as e:
        problems, plan = list(e.problems), None
    for i, raw in enumerate(data.get("steps") or [] if isinstance(data, dict) else []):
        problem = tool_problem(raw, tools) if isinstance(raw, dict) else None
        if problem and problem not in problems:
            problems.append(problem if raw.get("id") else f"steps[{i}]: {problem}")
    if problems or plan is None:
        raise PlanValidationError(problems or ["plan: not a plan"], source=source)
    return plan


def tool_problem(raw: Mapping[str, Any], tools: ToolRegistry) -> str | None:
    """The problem with a step that names a tool that is not registered, if any."""
    if raw.get("kind") != StepKind.TOOL or not raw.get("tool") or raw["tool"] in tools:
        return None
    known = ", ".join(sorted(t.name for t in tools)) or "none"
    return f"step {raw.get('id')!r}: unknown tool {raw['tool']!r} (registered tools: {known})"


def served_name(model: ChatModel) -> str:
    """The model's name as the endpoint reported it when it differs from the one asked
    for (a local server serves its own model whatever the request names)."""
    served = getattr(model, "served", None)
    if isinstance(served, str) and served and served != model.name:
        return f"{served}, asked for {model.name!r}"
    return model.name


def _rejected(attempt: int, text: str, problems: Sequence[str]) -> dict[str, Any]:
    try:
        plan: Any = json.loads(text)
    except ValueError:
        plan = text
    return {"attempt": attempt, "plan": plan, "problems": list(problems)}


def fallback_plan(goal: str, inputs: Mapping[str, Any] | None = None) -> Plan:
    """A one-step plan that answers the goal with the SLM: valid by construction."""
    step = Step(
        id="answer",
        kind=StepKind.GENERATE,
        inputs={"instruction": goal, "context": "$input"},
    )
    return Plan(goal=goal, steps=[step], output="$answer.text")


class Planner:
    """Turns a goal into a Plan with a chat model.

    Args:
        model: the planning model (an `OpenAIChatModel`, or the local model host).
        tools: the registered Python tools plans may call.
        settings: step limit, repairs, prices.
        budget: the run's budget; every call is checked and counted against it.
        is_local: the model is the local SLM (no endpoint): plans must also be about
            the goal (`grounding`), and plans that stay invalid fall back to
            `fallback` instead of failing.
        allow_llm_steps: offer `kind: llm` (only when an LLM can run those steps).
        is_compact: constrain replies to the compact plan schema (bounded values), for
            small models behind a grammar; None: when `is_local`.
        max_tokens: the most tokens a plan reply may take.
        fallback: the local planner's plan of last resort, from the goal and inputs.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        tools: ToolRegistry | None = None,
        settings: Settings | None = None,
        budget: Budget | None = None,
        is_local: bool = False,
        allow_llm_steps: bool = True,
        is_compact: bool | None = None,
        max_tokens: int = PLAN_MAX_TOKENS,
        fallback: Callable[[str, Mapping[str, Any]], Plan] = fallback_plan,
    ) -> None:
        self.model = model
        self.tools = tools if tools is not None else ToolRegistry()
        self.settings = settings if settings is not None else Settings()
        self.budget = budget if budget is not None else Budget()
        self.is_local = is_local
        self.is_compact = is_local if is_compact is None else is_compact
        self.max_tokens = max_tokens
        self.fallback = fallback
        self.shown: list[dict[str, Any]] = []  # the example plans in the last prompt
        self.kinds = [*SLM_KIND_NAMES]
        if allow_llm_steps:
            self.kinds.append(StepKind.LLM.value)
        if list(self.tools):
            self.kinds.append(StepKind.TOOL.value)
        self.last_fallback: str | None = None
        self.attempts = 0
        self.rejected: list[dict[str, Any]] = []
        """Each reply of the last `plan` that failed validation: `attempt`, `plan` (the
        reply, as JSON when it parses) and its `problems`."""

    def max_steps(self) -> int:
        """The most steps the next plan may have: the plan limit, or what the budget has left."""
        left = self.budget.steps_left()
        return self.settings.max_steps if left is None else min(self.settings.max_steps, left)

    def messages(self, goal: str, inputs: Mapping[str, Any], learned: str | None) -> list[Message]:
        """The planning prompt for this goal, with the example plans nearest it."""
        self.shown = nearest(goal, inputs)
        return planner_messages(
            goal,
            inputs,
            kinds=self.kinds,
            tools=self.tools.catalogue(),
            max_steps=self.max_steps(),
            learned=learned,
            examples=self.shown,
        )

    def _start(self, goal: str) -> int:
        check_goal(goal)
        max_steps = self.max_steps()
        self.budget.check_steps(1, "planning")
        self.last_fallback = None
        self.attempts = 0
        self.rejected = []
        return max_steps

    def plan(
        self,
        goal: str,
        inputs: Mapping[str, Any],
        *,
        learned: str | None = None,
        repair_of: tuple[str, Sequence[str]] | None = None,
    ) -> Plan:
        """Plan the goal, repairing invalid plans with the model.

        Args:
            goal: what the run should achieve.
            inputs: the run's inputs (summarised for the model, and checked).
            learned: what an earlier round found (from the joiner), for a replan.
            repair_of: a reply that already failed validation, and its problems.

        Raises:
            InputError: the goal is empty.
            PlanValidationError: still invalid after the repairs (every problem).
            BudgetExceededError: the budget ran out before a valid plan.
            EndpointUnavailableError: the endpoint kept failing.
        """
        max_steps = self._start(goal)
        messages = self.messages(goal, inputs, learned)
        if repair_of is not None:
            messages += repair_messages(repair_of[0], repair_of[1])
        schema = plan_schema(self.kinds, max_steps=max_steps, is_compact=self.is_compact)
        problems: list[str] = []
        for attempt in range(self.settings.plan_repairs + 1):
            self.budget.check_llm("planning")
            completion = self.model.complete(
                messages, schema=schema, max_tokens=self.max_tokens, temperature=0.0
            )
            self.attempts += 1
            self.budget.record_llm("planner", self.model, completion, self.settings, where="plan")
            try:
                plan = self.parse(completion.text, goal, inputs, max_steps)
            except PlanValidationError as e:
                problems = e.problems
                log.info("plan_invalid", attempt=attempt + 1, problems=len(problems))
                self.rejected.append(_rejected(attempt + 1, completion.text, problems))
                messages += repair_messages(completion.text, problems)
                continue
            log.info("plan_ready", steps=len(plan.steps), attempts=attempt + 1)
            return plan
        return self._give_up(goal, inputs, problems)

    def _give_up(self, goal: str, inputs: Mapping[str, Any], problems: list[str]) -> Plan:
        if self.is_local:
            self.last_fallback = "; ".join(problems)
            log.warning("plan_fallback", problems=len(problems))
            return self.fallback(goal, inputs)
        raise PlanValidationError(
            problems, source=f"planner ({served_name(self.model)}, {self.attempts} attempts)"
        )

    def parse(self, text: str, goal: str, inputs: Mapping[str, Any], max_steps: int) -> Plan:
        """A model's reply → a validated Plan.

        Raises:
            PlanValidationError: not JSON, not a plan, or a plan with problems.
        """
        try:
            data = json.loads(extract_json(text))
        except json.JSONDecodeError as e:
            shown = " ".join(text.split())[:80]
            raise PlanValidationError(
                [f"the reply is not JSON ({e.msg}): {shown!r}; reply with the JSON plan only"],
                source="planner",
            ) from e
        if isinstance(data, dict):
            data.setdefault("goal", goal)
            data.setdefault("version", 1)
        plan = check_plan(
            data, tools=self.tools, inputs=inputs, max_steps=max_steps, source="planner"
        )
        if self.is_local:
            examples = [e["plan"] for e in self.shown]
            problems = grounding_problems(plan, goal, inputs, examples=examples)
            if problems:
                raise PlanValidationError(problems, source="planner")
        return plan

    def stream(
        self, goal: str, inputs: Mapping[str, Any], *, learned: str | None = None
    ) -> PlanStream:
        """Start planning with a streamed reply; iterate the result for its steps.

        Raises:
            InputError: the goal is empty.
            BudgetExceededError, EndpointUnavailableError: as for `plan`.
        """
        max_steps = self._start(goal)
        # Counted now: steps (and their LLM calls) start before the stream ends.
        self.budget.check_llm("planning", is_reserving=True)
        messages = self.messages(goal, inputs, learned)
        schema = plan_schema(self.kinds, max_steps=max_steps, is_compact=self.is_compact)
        stream = getattr(self.model, "stream", None)
        if callable(stream):
            streamed = stream(messages, schema=schema, max_tokens=self.max_tokens)
            return PlanStream(
                self, goal, inputs, max_steps, streamed.chunks, lambda: streamed.completion
            )
        completion = self.model.complete(messages, schema=schema, max_tokens=self.max_tokens)
        return PlanStream(
            self, goal, inputs, max_steps, iter([completion.text]), lambda: completion
        )


class PlanStream:
    """A plan arriving: iterate for steps in dependency order; `finish()` for the Plan.

    A step is yielded once its JSON object is complete and every step it depends on
    has been yielded, so each can be added to a running flow at once. A step that
    can't be a step (bad shape, unknown kind or tool, duplicate id) is held back and
    reported by `finish()`.
    """

    def __init__(
        self,
        planner: Planner,
        goal: str,
        inputs: Mapping[str, Any],
        max_steps: int,
        chunks: Iterator[str],
        completion: Any,
    ) -> None:
        self.planner = planner
        self.goal = goal
        self.inputs = inputs
        self.max_steps = max_steps
        self._chunks = chunks
        self._completion = completion
        self.scanner = StepScanner()
        self.yielded: dict[str, Step] = {}
        self._held: list[Step] = []
        self.first_step_s: float | None = None

    def __iter__(self) -> Iterator[Step]:
        for delta in self._chunks:
            for raw in self.scanner.feed(delta):
                step = self._accept(raw)
                if step is not None:
                    self._held.append(step)
                    yield from self._release()
        completion: Completion | None = self._completion()
        if completion is not None:
            planner = self.planner
            planner.attempts += 1
            planner.budget.record_llm(
                "planner",
                planner.model,
                completion,
                planner.settings,
                where="plan (streamed)",
                is_reserved=True,
            )

    def _accept(self, raw: Any) -> Step | None:
        if not isinstance(raw, dict) or tool_problem(raw, self.planner.tools):
            return None
        try:
            step = Step.model_validate(raw)
        except ValidationError:
            return None
        if len(self.yielded) + len(self._held) >= self.max_steps:
            return None  # over the step limit: not dispatched; finish() reports it
        known = step.kind in StepKind.__members__.values()
        taken = step.id in self.yielded or any(h.id == step.id for h in self._held)
        if not known or taken or not STEP_ID.match(step.id) or step.id == "input":
            return None
        return step

    def _release(self) -> Iterator[Step]:
        progressed = True
        while progressed:
            progressed = False
            for step in list(self._held):
                if all(d in self.yielded for d in step.dependencies()):
                    self._held.remove(step)
                    self.yielded[step.id] = step
                    progressed = True
                    log.debug("plan_step_streamed", step_id=step.id)
                    yield step

    @property
    def text(self) -> str:
        """The reply received so far."""
        return self.scanner.text

    def finish(self) -> Plan:
        """The whole plan, validated (call once the iteration is over).

        Raises:
            PlanValidationError: every problem; steps already yielded may have run.
        """
        plan = self.planner.parse(self.text, self.goal, self.inputs, self.max_steps)
        streamed = [s.model_dump() for s in self.yielded.values()]
        for step in plan.steps:
            if step.id in self.yielded and step.model_dump() not in streamed:
                raise PlanValidationError(
                    [f"step {step.id!r}: differs from the streamed step"], source="planner"
                )
        return plan
