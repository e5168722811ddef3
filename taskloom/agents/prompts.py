"""What the planner and the joiner say to the model: prompts and the planning schema.

Kept apart from the control flow so the wording can be tuned without touching it,
and so tests can read exactly what a model was told.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from taskloom.chat import Message
from taskloom.plan import StepKind

KIND_GUIDE: dict[str, str] = {
    "extract": 'inputs {"text"}; "output": a JSON schema (required) → an object matching it',
    "fill_slots": 'inputs {"text", "slots": {name: description}} '
    '→ {"slots": {...}, "missing": [...]}',
    "filter": 'inputs {"query", "passages": [...], "top_k"} → {"kept": [...], "scores": [...]}',
    "classify": 'inputs {"text", "labels": [...]} → {"label", "confidence"}',
    "generate": 'inputs {"instruction", "context"} → {"text"}',
    "llm": 'inputs {"instruction", "context"}, optional "output" schema → {"text"} or that '
    "object; the large model: costly, only for what the small kinds cannot do",
    "tool": 'inputs: the tool\'s arguments; "tool": its name → what the tool returns',
}


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


COMPACT_VALUE: dict[str, Any] = {
    "anyOf": [
        _text(300),
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": _text(120), "maxItems": 8},
        {"type": "object", "additionalProperties": _text(120), "maxProperties": 8},
    ]
}
"""An input value a small model may write: text, a number, a short list or map of text."""

COMPACT_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": "object"},
        "properties": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"type": {"enum": ["string", "number", "integer", "boolean"]}},
                "required": ["type"],
                "additionalProperties": False,
            },
            "maxProperties": 8,
        },
        "required": {"type": "array", "items": _text(40), "maxItems": 8},
    },
    "required": ["type", "properties"],
    "additionalProperties": False,
}
"""A flat object schema: what a small model may write as a step's `output`."""


def plan_schema(
    kinds: Sequence[str], *, max_steps: int, is_compact: bool = False
) -> dict[str, Any]:
    """The JSON schema a plan reply is constrained to: the Plan format, narrowed.

    Narrower than `Plan.model_json_schema()` (kinds as an enum, ids as a pattern, no
    unknown fields) so a small model constrained by a grammar can only write plans
    that parse; references and cycles are still checked afterwards. `is_compact` also
    bounds every value (short text, flat lists and maps, flat output schemas), so a
    grammar-constrained small model cannot ramble until it runs out of tokens.
    """
    inputs: dict[str, Any] = {"type": "object"}
    output: dict[str, Any] = {"type": "object"}
    plan_output: dict[str, Any] = {}
    if is_compact:
        inputs = {"type": "object", "additionalProperties": COMPACT_VALUE, "maxProperties": 6}
        output = COMPACT_OUTPUT_SCHEMA
        plan_output = COMPACT_VALUE
        max_steps = min(max_steps, 8)
    step = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
            "kind": {"enum": list(kinds)},
            "inputs": inputs,
            "output": output,
            "after": {"type": "array", "items": _text(32), "maxItems": 8},
            "tool": _text(64),
        },
        "required": ["id", "kind", "inputs"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "version": {"const": 1},
            "goal": _text(300),
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps},
            "output": plan_output,
        },
        "required": ["version", "steps", "output"],
        "additionalProperties": False,
    }


def summarize_inputs(inputs: Mapping[str, Any], *, preview_chars: int = 120) -> str:
    """One line per input: its name, type, size and the start of its value."""
    if not inputs:
        return "(no inputs)"
    lines = []
    for name, value in inputs.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        size = f"{len(value)} items" if isinstance(value, list | dict) else f"{len(text)} chars"
        cut = text[:preview_chars] + ("…" if len(text) > preview_chars else "")
        lines.append(f"- $input.{name}: {type(value).__name__}, {size}: {cut}")
    return "\n".join(lines)


def planner_messages(
    goal: str,
    inputs: Mapping[str, Any],
    *,
    kinds: Sequence[str],
    tools: Sequence[Mapping[str, Any]],
    max_steps: int,
    learned: str | None = None,
    examples: Sequence[Mapping[str, Any]] = (),
) -> list[Message]:
    """The planning prompt: the format, kinds and tools first (shared), then examples
    chosen for this goal (`agents.examples`), the goal last."""
    kind_lines = "\n".join(f"- {k}: {KIND_GUIDE[k]}" for k in kinds if k in KIND_GUIDE)
    if tools:
        tool_lines = "\n".join(
            f"- {t['name']}: {t.get('description') or ''} arguments: "
            + json.dumps(t.get("arguments", {}).get("properties", {}))
            for t in tools
        )
    else:
        tool_lines = "(none: do not use kind tool)"
    system = (
        "You are a planner. Break the goal into a plan: a JSON object "
        '{"version": 1, "goal": ..., "steps": [...], "output": ...}. '
        "Steps run in parallel as soon as the steps they reference have finished, so keep "
        "independent steps independent.\n"
        'Each step: {"id": snake_case id, "kind": a kind, "inputs": {...}, '
        '"output": a JSON schema (extract, llm), "after": [ids], "tool": a tool name}.\n'
        'References: "$input.NAME" is a run input; "$ID" is a whole step output and '
        '"$ID.field" a field of it; "${ID.field}" inside a longer string. Reference only '
        "inputs that exist and steps in the plan, with no cycles.\n\n"
        f"Kinds:\n{kind_lines}\n\nRegistered tools:\n{tool_lines}\n\n"
        '"output" is the run\'s result: any JSON with references.\n'
        f"Use at most {max_steps} steps. Reply with the JSON plan only."
    )
    if examples:
        system += (
            "\n\nExamples: other goals, each with its own inputs. Plan this goal, reading "
            "this run's inputs; do not copy them."
        )
        for ex in examples:
            shown = ", ".join(f"$input.{name} ({what})" for name, what in ex["inputs"].items())
            plan = {"version": 1, "goal": ex["goal"], **ex["plan"]}
            system += f"\n\nGoal: {ex['goal']}\nInputs: {shown}\nPlan: {json.dumps(plan)}"
    user = f"Goal: {goal}\nInputs:\n{summarize_inputs(inputs)}"
    if learned:
        user += f"\n\nAn earlier plan ran; what it found:\n{learned}\nPlan what is still needed."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repair_messages(reply: str, problems: Sequence[str]) -> list[Message]:
    """The turn that sends a bad plan back to the model with every problem."""
    listed = "\n".join(f"- {p}" for p in problems)
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That plan is invalid:\n{listed}\nReply with the corrected JSON plan only.",
        },
    ]


JOIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"enum": ["finish", "replan"]},
        "answer": {"description": "the final answer (finish)"},
        "reason": {"type": "string", "description": "why (replan: what is missing)"},
    },
    "required": ["action"],
}


def joiner_messages(
    goal: str, *, plan_output: Any, steps: Sequence[Mapping[str, Any]], can_replan: bool
) -> list[Message]:
    """The joining prompt: the goal, what each step produced, and the two choices."""
    results = "\n".join(
        f"- {s['id']} ({s['kind']}, {s['status']}): "
        + json.dumps(s.get("value") if s.get("value") is not None else s.get("error"))[:600]
        for s in steps
    )
    choices = (
        'Reply {"action": "finish", "answer": ...} with the answer to the goal, or '
        '{"action": "replan", "reason": ...} when the results are not enough and another '
        "plan could get what is missing."
        if can_replan
        else 'Reply {"action": "finish", "answer": ...} with the best answer the results allow.'
    )
    return [
        {
            "role": "system",
            "content": "You check the results of a plan against its goal. " + choices,
        },
        {
            "role": "user",
            "content": f"Goal: {goal}\nStep results:\n{results}\n"
            f"Plan output: {json.dumps(plan_output, ensure_ascii=False)[:1500]}",
        },
    ]


SLM_KIND_NAMES = tuple(
    k.value
    for k in (
        StepKind.EXTRACT,
        StepKind.FILL_SLOTS,
        StepKind.FILTER,
        StepKind.CLASSIFY,
        StepKind.GENERATE,
    )
)
