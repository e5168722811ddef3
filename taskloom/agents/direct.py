"""The direct plan: one SLM step that fits what the goal asks, for goals kept on the SLM.

Two decisions, in order:

1. **The kind** (`choose_kind`), from the inputs' shapes and a small deterministic cue
   on the goal's words. Each kind has a family of words that ask for it; the kind
   whose word comes first in the goal wins (ties go in the order below), among the
   kinds the inputs can feed:
   - `filter`: which, find, keep, select, pick, choose, retrieve, relevant, mention;
     needs an input that is a list of texts (the passages);
   - `classify`: a `labels` input; classify, categorise, label, tag, whether; or a
     question that opens with a verb such as "is" or "does", not "can you" (its labels
     are what it names around "or", else yes / no); needs a text input;
   - `fill_slots`: slot, fill in, fill out, form; needs a text input;
   - `extract`: extract, pull, get, find, identify, list, give, collect, capture, and
     the question words what, who, when, where, which, how many, how much; needs a text;
   - otherwise `generate`, with the goal as its instruction and the inputs as context.
2. **The parameters**, written by the SLM under a grammar, in the goal's own words:
   every free-form string it writes is a verbatim span of the goal
   (`x-copy-from`, see `chat.llama.grammar`), and names are snake_case by pattern.
   - `extract`: up to six fields, each a snake_case name and a description; a field
     whose description's words earlier fields already cover is dropped (small models
     keep listing fields, repeating the goal's words);
   - `fill_slots`: the same, as slots;
   - `classify`: two to eight labels, as the goal names them;
   - `filter`: the query the passages should answer.
   `extract` and `fill_slots` set `copy: true` (values are spans of the input text, as
   the goal asks for text that is in it) unless the goal asks to reword (translate,
   convert, normalise, format, rewrite, summarise). When the SLM's answer keeps
   failing, or there is no SLM, the plan is `generate`, and `why` says so.

The text a kind reads is the input the goal names (its name among the goal's words),
else the longest one of the right shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.agents.budget import Budget
from taskloom.agents.grounding import content_words
from taskloom.chat import ChatModel, Message
from taskloom.chat.base import COPY_KEYWORD
from taskloom.config import Settings
from taskloom.errors import OutputValidationError
from taskloom.logs import get_logger
from taskloom.plan import Plan, Step, StepKind
from taskloom.tools.base import Usage, ask_until_valid, check_schema

log = get_logger(__name__)

KIND_CUES: dict[StepKind, re.Pattern[str]] = {
    StepKind.FILTER: re.compile(
        r"\b(which|find|keep|select|pick|choose|retrieve|relevant|mention)", re.I
    ),
    StepKind.CLASSIFY: re.compile(r"\b(classif|categori[sz]|label|tag\b|whether\b)", re.I),
    StepKind.FILL_SLOTS: re.compile(r"\b(slots?\b|fill (in|out)\b|form\b)", re.I),
    StepKind.EXTRACT: re.compile(
        r"\b(extract|pull|get|find|identify|list|give|collect|capture|what|who|when|where|"
        r"which|how (many|much))\b",
        re.I,
    ),
}
"""The words that ask for each kind (see the module docstring); order breaks ties."""

QUESTION = re.compile(
    r"^\s*(is|are|was|were|does|do|did|can|could|will|would|should|has|have)\b"
    r"(?!\s+(you|we)\b)",
    re.I,
)
"""A goal that opens like a closed question asks to choose: between what it names, or yes /
no. "Can you …" and "Could we …" are requests, not questions."""

REWORD = re.compile(r"\b(translat|convert|normali[sz]|format|rewrit|reword|summari[sz])", re.I)
"""A goal that asks for text changed from the input's words: values need not be copied."""

NAME = "^[a-z][a-z0-9_]{0,31}$"
MAX_FIELDS = 6
MAX_LABELS = 8


def _described(item: str, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "pattern": NAME},
                        "description": {"type": "string", "maxLength": 120},
                    },
                    "required": ["name", "description"],
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": MAX_FIELDS,
                "description": f"each {item}: a snake_case name, and {description}",
            }
        },
        "required": ["fields"],
        "additionalProperties": False,
    }


FIELDS_SCHEMA = _described("field", "the goal's words for it")
LABELS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "labels": {
            "type": "array",
            "items": {"type": "string", "maxLength": 60},
            "minItems": 2,
            "maxItems": MAX_LABELS,
        }
    },
    "required": ["labels"],
    "additionalProperties": False,
}
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "maxLength": 200}},
    "required": ["query"],
    "additionalProperties": False,
}

# Few-shot examples of each derivation: generic goals, none a test's.
FIELD_EXAMPLES = [
    (
        "Get the sender's email address and the order number.",
        {
            "fields": [
                {"name": "email_address", "description": "the sender's email address"},
                {"name": "order_number", "description": "the order number"},
            ]
        },
    ),
    (
        "What is the total amount due on the invoice?",
        {"fields": [{"name": "total_amount", "description": "the total amount due"}]},
    ),
    (
        "Fill in the departure date, the airline and the seat number from the booking.",
        {
            "fields": [
                {"name": "departure_date", "description": "the departure date"},
                {"name": "airline", "description": "the airline"},
                {"name": "seat_number", "description": "the seat number"},
            ]
        },
    ),
]
LABEL_EXAMPLES = [
    ("Is this message spam or not spam?", {"labels": ["spam", "not spam"]}),
    (
        "Classify the ticket as billing, technical or account.",
        {"labels": ["billing", "technical", "account"]},
    ),
    (
        "Does the caller want a refund, a repair or a replacement?",
        {"labels": ["a refund", "a repair", "a replacement"]},
    ),
]
FIELDS_TASK = (
    "Name the fields the goal asks for: each a snake_case name, and the goal's words for it."
)
LABELS_TASK = "Name the labels the goal asks to choose between, in the goal's own words."
QUERY_TASK = "Write what the goal asks the passages to be about, in the goal's own words."
QUERY_EXAMPLES = [
    (
        "Which of these paragraphs explain how to reset a password?",
        {"query": "how to reset a password"},
    ),
    ("Find the reviews that mention the battery life.", {"query": "the battery life"}),
]


@dataclass(frozen=True)
class DirectPlan:
    """A one-step plan for a goal, and why it is that step."""

    plan: Plan
    why: str


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_texts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def pick_input(goal: str, inputs: Mapping[str, Any], fits: Callable[[Any], bool]) -> str | None:
    """The input a kind reads: one the goal names, else the longest that `fits`."""
    names = [k for k, v in inputs.items() if k != "labels" and fits(v)]
    words = content_words(goal)
    named = [k for k in names if content_words(k) & words]
    pool = named or names
    return max(pool, key=lambda k: len(json.dumps(inputs[k]))) if pool else None


def _labels_input(inputs: Mapping[str, Any]) -> bool:
    labels = inputs.get("labels")
    return isinstance(labels, list) and _is_texts(labels) and len(set(labels)) >= 2


def choose_kind(goal: str, inputs: Mapping[str, Any]) -> tuple[StepKind, str]:
    """The kind that fits the goal and the inputs, and the cue that chose it."""
    has_text = pick_input(goal, inputs, _is_text) is not None
    if has_text and _labels_input(inputs):
        return StepKind.CLASSIFY, "the inputs carry labels"
    feeds = {
        StepKind.FILTER: pick_input(goal, inputs, _is_texts) is not None,
        StepKind.CLASSIFY: has_text,
        StepKind.FILL_SLOTS: has_text,
        StepKind.EXTRACT: has_text,
    }
    found: list[tuple[int, int, StepKind, str]] = []
    for order, (kind, words) in enumerate(KIND_CUES.items()):
        match = words.search(goal)
        if feeds[kind] and match:
            found.append((match.start(), order, kind, f"the goal says {match.group(0)!r}"))
    question = QUESTION.match(goal)
    if has_text and question:
        found.append((0, 1, StepKind.CLASSIFY, f"the goal opens with {question.group(1)!r}"))
    if not found:
        return StepKind.GENERATE, "no cue for another kind"
    _, _, kind, cue = min(found)
    return kind, cue


class DirectPlanner:
    """One-step plans that fit the goal (see the module docstring).

    Args:
        slm: the small model that writes the step's fields, labels or query; None
            chooses the kind alone (and falls back to `generate` where it needs them).
        settings: re-asks and prices.
        budget: the SLM calls are counted against it (as steps' cost).
    """

    def __init__(
        self,
        slm: ChatModel | None,
        *,
        settings: Settings | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.slm = slm
        self.settings = settings if settings is not None else Settings()
        self.budget = budget if budget is not None else Budget()

    def plan(self, goal: str, inputs: Mapping[str, Any]) -> DirectPlan:
        """The one-step plan for `goal`, and why it is that step."""
        kind, cue = choose_kind(goal, inputs)
        try:
            made = self._plan(kind, goal, inputs)
            problem = "there is no SLM to name its parameters" if self.slm is None else ""
        except OutputValidationError:
            made, problem = None, "the SLM's answers kept failing validation"
        if made is None:
            plan = generate_plan(goal, inputs)
            why = f"{kind.value} ({cue}), but {problem or 'the SLM named nothing usable'}; generate"
        else:
            plan, said = made
            why = f"{kind.value} ({cue}); {said}"
        log.info("direct_plan", kind=plan.steps[0].kind, why=why)
        return DirectPlan(plan, why)

    def _plan(
        self, kind: StepKind, goal: str, inputs: Mapping[str, Any]
    ) -> tuple[Plan, str] | None:
        if kind == StepKind.GENERATE:
            return generate_plan(goal, inputs), "the goal is the instruction"
        if kind == StepKind.FILTER:
            return self._filter(goal, inputs)
        text = pick_input(goal, inputs, _is_text)
        assert text is not None  # choose_kind saw one
        if kind == StepKind.CLASSIFY:
            return self._classify(goal, inputs, text)
        return self._fields(kind, goal, text)

    def _classify(self, goal: str, inputs: Mapping[str, Any], text: str) -> tuple[Plan, str] | None:
        labels: Any = "$input.labels"
        said = "labels from $input.labels"
        if not _labels_input(inputs):
            if QUESTION.match(goal) and not re.search(r"\bor\b", goal, re.I):
                labels, said = ["yes", "no"], "a yes / no question"
            else:
                value = self._ask(goal, LABELS_SCHEMA, LABEL_EXAMPLES, LABELS_TASK)
                named = list(dict.fromkeys(v.strip() for v in value.get("labels", [])))
                labels = [label for label in named if label]
                if len(labels) < 2:
                    return None
                said = "labels named by the SLM: " + ", ".join(labels)
        step = Step(
            id="answer",
            kind=StepKind.CLASSIFY,
            inputs={"text": f"$input.{text}", "labels": labels},
        )
        return Plan(goal=goal, steps=[step], output="$answer.label"), said

    def _filter(self, goal: str, inputs: Mapping[str, Any]) -> tuple[Plan, str] | None:
        passages = pick_input(goal, inputs, _is_texts)
        assert passages is not None  # choose_kind saw them
        query = str(self._ask(goal, QUERY_SCHEMA, QUERY_EXAMPLES, QUERY_TASK).get("query", ""))
        said = f"query named by the SLM: {query.strip()!r}"
        if not content_words(query):  # no SLM, or only function words: the goal says it best
            query, said = goal, "the goal is the query"
        step = Step(
            id="answer",
            kind=StepKind.FILTER,
            inputs={"query": query.strip(), "passages": f"$input.{passages}"},
        )
        return Plan(goal=goal, steps=[step], output="$answer.kept"), said

    def _fields(self, kind: StepKind, goal: str, text: str) -> tuple[Plan, str] | None:
        fields: dict[str, str] = {}
        covered: set[str] = set()
        for f in self._ask(goal, FIELDS_SCHEMA, FIELD_EXAMPLES, FIELDS_TASK).get("fields", []):
            name, what = f["name"], f["description"].strip()
            words = content_words(what)
            # A small model keeps listing fields; one whose words an earlier field
            # already covers is not something else the goal asks for.
            if name not in fields and words - covered:
                fields[name] = what
                covered |= words
        if not fields:
            return None
        copy = not REWORD.search(goal)
        said = "fields named by the SLM: " + ", ".join(fields) + (", copied" if copy else "")
        inputs: dict[str, Any] = {"text": f"$input.{text}", "copy": copy}
        if kind == StepKind.FILL_SLOTS:
            step = Step(id="answer", kind=kind, inputs={**inputs, "slots": fields})
            return Plan(goal=goal, steps=[step], output="$answer.slots"), said
        properties = {n: {"type": ["string", "null"], "description": d} for n, d in fields.items()}
        output = {"type": "object", "properties": properties, "required": list(fields)}
        step = Step(id="answer", kind=kind, inputs=inputs, output=output)
        return Plan(goal=goal, steps=[step], output="$answer"), said

    def _ask(
        self,
        goal: str,
        schema: dict[str, Any],
        examples: list[tuple[str, dict[str, Any]]],
        task: str,
    ) -> dict[str, Any]:
        """The SLM's answer about `goal`, every free string a span of it; {} without an SLM.

        Raises:
            OutputValidationError: the answer kept failing validation after the re-asks.
        """
        if self.slm is None:
            return {}
        shots = "\n\n".join(f"Goal: {g}\nAnswer: {json.dumps(a)}" for g, a in examples)
        messages: list[Message] = [
            {"role": "system", "content": f"{task}\n\n{shots}"},
            {"role": "user", "content": f"Goal: {goal}\nAnswer:"},
        ]
        usage = Usage()
        try:
            value: dict[str, Any] = ask_until_valid(
                self.slm,
                "direct plan",
                messages,
                constraint={**schema, COPY_KEYWORD: goal},
                validator=check_schema(schema, "direct plan"),
                max_tokens=160,
                output_retries=self.settings.output_retries,
                usage=usage,
            )
        finally:
            cost = self.settings.cost_usd(usage.model, usage.prompt_tokens, usage.completion_tokens)
            self.budget.record_steps(0, cost)
        return value


def generate_plan(goal: str, inputs: Mapping[str, Any]) -> Plan:
    """A `generate` step on the goal, with the inputs as context: valid by construction."""
    step = Step(
        id="answer",
        kind=StepKind.GENERATE,
        inputs={"instruction": goal, "context": "$input" if inputs else None},
    )
    return Plan(goal=goal, steps=[step], output="$answer.text")


def direct_plan(goal: str, inputs: Mapping[str, Any]) -> Plan:
    """The one-step plan chosen without a model: the kind's cue alone (see `choose_kind`)."""
    return DirectPlanner(None).plan(goal, inputs).plan
