"""Is a plan about its goal? The checks a plan from the local model must pass.

A small model asked to plan tends to copy the example it was shown, and a copied plan
can validate while answering nothing the goal asked (issue 17: a goal asking for a name
and a city got a triage plan's `intent` and `reply`). These checks are lexical and
general; each failure is a named problem that goes back through the planner's repair
loop like any validation problem:

- **the plan uses the goal's inputs**: every run input is read by some step (a user
  passes an input because the goal is about it);
- **its output answers the goal**: the output references a step, and what it shows
  (its keys, the fields it selects, and the ids, fields, labels and instructions of
  the steps it reads directly) shares a content word with the goal;
- **it is not an example**: a plan whose steps are those of an example it was shown.

Content words are lower-cased words minus a short list of function words and
task verbs, with plural endings cut, so "cities" meets "city".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskloom.plan import Plan, Step

_WORD = re.compile(r"[a-z][a-z0-9]*")
_REFERENCE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][\w.\[\]]*")
_INPUT_REF = re.compile(r"\$\{?input\.([A-Za-z_]\w*)")

STOPWORDS = frozenset({
    "a", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for",
    "from", "give", "get", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
    "me", "my", "of", "on", "or", "our", "out", "please", "should", "so", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "us", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "will", "with",
    "would", "you", "your", "all", "each", "every", "one", "some", "also", "just", "only",
    "than", "about", "after", "before", "extract", "classify", "filter", "generate", "find",
    "tell", "show", "list", "write", "return", "make", "take", "use", "answer", "text", "input",
    "output", "result", "value", "label", "step", "plan", "goal"
})  # fmt: skip
"""Function words, and verbs and nouns every plan or goal uses, which say nothing of its topic."""


def stem(word: str) -> str:
    """A word without its plural ending ("cities" → "city", "boxes" → "box")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """The stems of the words in `text` that carry its topic (snake_case split too)."""
    words = _WORD.findall(text.replace("_", " ").replace("'s", "").lower())
    return {stem(w) for w in words if w not in STOPWORDS}


def _strings(value: Any) -> Iterable[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def inputs_read(plan: Plan) -> set[str]:
    """The names of the run inputs that the plan's steps or output reference."""
    texts = [json.dumps(s.inputs) for s in plan.steps] + [json.dumps(plan.output)]
    return {m for t in texts for m in _INPUT_REF.findall(t)}


def _step_words(step: Step) -> set[str]:
    """A step's id, its literal strings (references cut out) and its output fields."""
    literal = " ".join(_REFERENCE.sub(" ", s) for s in _strings(step.inputs))
    names = " ".join(_INPUT_REF.findall(json.dumps(step.inputs)))
    fields = " ".join(_strings((step.output or {}).get("properties", {})))
    return content_words(f"{step.id} {literal} {names} {fields}")


def output_words(plan: Plan) -> set[str]:
    """What the plan's output shows: its keys and selected fields, and the steps it reads."""
    steps = {s.id: s for s in plan.steps}
    words: set[str] = set()
    read: set[str] = set()
    for text in _strings(plan.output):
        for ref in _REFERENCE.findall(text):
            path = ref.strip("${}").replace("[", ".").split(".")
            read.add(path[0])
            words |= content_words(" ".join(path[1:]))
        words |= content_words(_REFERENCE.sub(" ", text))
    for step_id in read & set(steps):
        words |= _step_words(steps[step_id])
    return words


def steps_read_by_output(plan: Plan) -> set[str]:
    """The ids of the steps the plan's output references directly."""
    ids = {s.id for s in plan.steps}
    refs = (
        r.strip("${}").split(".")[0] for t in _strings(plan.output) for r in _REFERENCE.findall(t)
    )
    return {r for r in refs if r in ids}


def grounding_problems(
    plan: Plan,
    goal: str,
    inputs: Mapping[str, Any],
    *,
    examples: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """Every way the plan fails to be about its goal (see the module docstring).

    `examples` are the example plans the model was shown (`{"steps": [...], ...}`).
    """
    problems: list[str] = []
    steps = [s.model_dump(mode="json", exclude_none=True) for s in plan.steps]
    for example in examples:
        theirs = [
            Step.model_validate(s).model_dump(mode="json", exclude_none=True)
            for s in example["steps"]
        ]
        if steps == theirs:
            problems.append(
                "plan: it copies an example plan; write the steps this goal needs, "
                "reading this run's inputs"
            )
    for name in sorted(set(inputs) - inputs_read(plan)):
        problems.append(
            f"plan: no step uses input {name!r}; the goal's inputs are what the plan works "
            f'on: read it with "$input.{name}"'
        )
    if not steps_read_by_output(plan):
        problems.append(
            'plan: its "output" references no step; set "output" to the step results '
            "that answer the goal"
        )
        return problems
    wanted = content_words(goal)
    shown = output_words(plan)
    if wanted and not wanted & shown:
        problems.append(
            f"plan: its output does not answer the goal: it shows {_listed(shown)} but the "
            f"goal asks about {_listed(wanted)}; make the output's steps, fields and "
            "labels the ones the goal asks for"
        )
    return problems


def _listed(words: set[str], most: int = 8) -> str:
    shown = sorted(words)[:most]
    return ", ".join(shown) + (", …" if len(words) > most else "") if shown else "nothing"
