"""The pool of example plans the planner is shown, chosen per goal by similarity.

One fixed example invites a small model to copy it: the plan validates (it was
written against the run's own input) and answers some other goal. So the prompt
shows the examples nearest the goal from a pool that covers every SLM kind, each
written against its own inputs: a copy then reads inputs the run does not have,
which validation rejects, and `grounding` rejects copies that slip through.

Similarity is the Jaccard overlap of content words (`grounding.content_words`) of the
goal and input names; ties keep the pool's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskloom.agents.grounding import content_words


def _string_field(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


def _fields(**described: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: _string_field(what) for name, what in described.items()},
        "required": list(described),
    }


POOL: list[dict[str, Any]] = [
    {
        "goal": "Get the customer's name and order number from the email, find the policy "
        "passages about their problem, then draft a reply",
        "inputs": {"email": "str", "policies": "list of str"},
        "plan": {
            "steps": [
                {"id": "customer", "kind": "extract",
                 "inputs": {"text": "$input.email", "copy": True},
                 "output": _fields(name="the customer's name", order_number="the order number")},
                {"id": "policy", "kind": "filter",
                 "inputs": {"query": "$input.email", "passages": "$input.policies", "top_k": 2}},
                {"id": "reply", "kind": "generate",
                 "inputs": {"instruction": "Draft a reply to ${customer.name} about order "
                            "${customer.order_number}", "context": "$policy.kept"}},
            ],
            "output": {"name": "$customer.name", "order_number": "$customer.order_number",
                       "reply": "$reply.text"},
        },
    },
    {
        "goal": "Sort the ticket into billing, technical or account, and write a one-line "
        "summary of it for the support team",
        "inputs": {"ticket": "str"},
        "plan": {
            "steps": [
                {"id": "queue", "kind": "classify",
                 "inputs": {"text": "$input.ticket",
                            "labels": ["billing", "technical", "account"]}},
                {"id": "summary", "kind": "generate",
                 "inputs": {"instruction": "Summarise the ticket in one line",
                            "context": "$input.ticket"}},
            ],
            "output": {"queue": "$queue.label", "summary": "$summary.text"},
        },
    },
    {
        "goal": "Fill in the check-in date and the city of the hotel request, then say which "
        "of the hotel notes matter for that stay",
        "inputs": {"request": "str", "notes": "list of str"},
        "plan": {
            "steps": [
                {"id": "stay", "kind": "fill_slots",
                 "inputs": {"text": "$input.request", "copy": True,
                            "slots": {"check_in": "the check-in date", "city": "the city"}}},
                {"id": "notes", "kind": "filter",
                 "inputs": {"query": "hotel stay in ${stay.slots.city}",
                            "passages": "$input.notes"}},
            ],
            "output": {"stay": "$stay.slots", "notes": "$notes.kept"},
        },
    },
    {
        "goal": "Pull the invoice total and the due date out of the invoice, then write a "
        "polite payment reminder",
        "inputs": {"invoice": "str"},
        "plan": {
            "steps": [
                {"id": "due", "kind": "extract", "inputs": {"text": "$input.invoice", "copy": True},
                 "output": _fields(total="the invoice total", due_date="the due date")},
                {"id": "reminder", "kind": "generate",
                 "inputs": {"instruction": "Write a polite reminder to pay ${due.total} "
                            "by ${due.due_date}", "context": "$input.invoice"}},
            ],
            "output": {"total": "$due.total", "due_date": "$due.due_date",
                       "reminder": "$reminder.text"},
        },
    },
    {
        "goal": "Decide whether the product review is positive or negative, then draft a "
        "thank-you note or an apology to match",
        "inputs": {"review": "str"},
        "plan": {
            "steps": [
                {"id": "sentiment", "kind": "classify",
                 "inputs": {"text": "$input.review", "labels": ["positive", "negative"]}},
                {"id": "note", "kind": "generate",
                 "inputs": {"instruction": "The review is ${sentiment.label}: draft a thank-you "
                            "note if positive, an apology if negative",
                            "context": "$input.review"}},
            ],
            "output": {"sentiment": "$sentiment.label", "note": "$note.text"},
        },
    },
    {
        "goal": "Find the manual sections about resetting the device and explain the reset "
        "steps in plain words",
        "inputs": {"sections": "list of str"},
        "plan": {
            "steps": [
                {"id": "reset", "kind": "filter",
                 "inputs": {"query": "how to reset the device", "passages": "$input.sections"}},
                {"id": "explained", "kind": "generate",
                 "inputs": {"instruction": "Explain the reset steps in plain words",
                            "context": "$reset.kept"}},
            ],
            "output": {"reset_steps": "$explained.text", "sections": "$reset.kept"},
        },
    },
    {
        "goal": "List the action items and their owners from the meeting notes, and decide "
        "if a follow-up meeting is needed",
        "inputs": {"notes": "str"},
        "plan": {
            "steps": [
                {"id": "actions", "kind": "extract", "inputs": {"text": "$input.notes"},
                 "output": {"type": "object", "required": ["items"], "properties": {
                     "items": {"type": "array", "description": "each action item and its owner",
                               "items": {"type": "string"}}}}},
                {"id": "follow_up", "kind": "classify",
                 "inputs": {"text": "$input.notes",
                            "labels": ["follow-up needed", "no follow-up"]}},
            ],
            "output": {"action_items": "$actions.items", "follow_up": "$follow_up.label"},
        },
    },
    {
        "goal": "Compare the two job offers by salary and location and recommend one",
        "inputs": {"first": "str", "second": "str"},
        "plan": {
            "steps": [
                {"id": "offer_a", "kind": "extract",
                 "inputs": {"text": "$input.first", "copy": True},
                 "output": _fields(salary="the salary", location="the location")},
                {"id": "offer_b", "kind": "extract",
                 "inputs": {"text": "$input.second", "copy": True},
                 "output": _fields(salary="the salary", location="the location")},
                {"id": "recommend", "kind": "generate",
                 "inputs": {"instruction": "Compare the two offers by salary and location "
                            "and recommend one",
                            "context": {"first": "$offer_a", "second": "$offer_b"}}},
            ],
            "output": {"first": "$offer_a", "second": "$offer_b",
                       "recommendation": "$recommend.text"},
        },
    },
]  # fmt: skip
"""Example plans over every SLM kind, each with its own inputs; none is any test's goal."""


def similarity(goal: str, inputs: Mapping[str, Any], example: Mapping[str, Any]) -> float:
    """Jaccard overlap of the content words of goal and input names."""
    mine = content_words(" ".join([goal, *inputs]))
    theirs = content_words(" ".join([example["goal"], *example["inputs"]]))
    return len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0


def nearest(
    goal: str, inputs: Mapping[str, Any], *, k: int = 2, pool: Sequence[dict[str, Any]] = POOL
) -> list[dict[str, Any]]:
    """The `k` pool examples most like this goal, most alike first."""
    ranked = sorted(enumerate(pool), key=lambda e: (-similarity(goal, inputs, e[1]), e[0]))
    return [e for _, e in ranked[:k]]
