"""Mermaid flowcharts of a plan, or of a run coloured by each step's status."""

from __future__ import annotations

from collections.abc import Iterable

from taskloom.plan import Plan, references
from taskloom.workflows.record import RunRecord

STATUS_STYLES = {
    "pending": "fill:#f4f4f5,stroke:#a1a1aa",
    "running": "fill:#dbeafe,stroke:#2563eb",
    "waiting": "fill:#ede9fe,stroke:#7c3aed",
    "done": "fill:#dcfce7,stroke:#16a34a",
    "failed": "fill:#fee2e2,stroke:#dc2626",
    "timed_out": "fill:#fee2e2,stroke:#9f1239",
    "skipped": "fill:#fef9c3,stroke:#ca8a04",
    "cancelled": "fill:#e4e4e7,stroke:#52525b",
}


def _flowchart(
    nodes: Iterable[tuple[str, str, list[str]]],
    statuses: dict[str, str] | None,
    *,
    inputs_to: Iterable[str] = (),
    to_output: Iterable[str] = (),
) -> str:
    lines = ["flowchart TD"]
    edges = []
    for step_id, label, deps in nodes:
        lines.append(f'  {step_id}["{step_id}<br/><small>{label}</small>"]')
        edges += [f"  {dep} --> {step_id}" for dep in deps]
    fed = list(inputs_to)
    if fed:
        lines.insert(1, "  input([input])")
        edges = [f"  input --> {step_id}" for step_id in fed] + edges
    feeding = list(to_output)
    if feeding:
        lines.append("  output([output])")
        edges += [f"  {step_id} --> output" for step_id in feeding]
    lines += edges
    if statuses:
        for status, style in STATUS_STYLES.items():
            members = [sid for sid, st in statuses.items() if st == status]
            if members:
                lines.append(f"  classDef {status} {style}")
                lines.append(f"  class {','.join(members)} {status}")
    return "\n".join(lines) + "\n"


def plan_mermaid(plan: Plan) -> str:
    """A flowchart of the plan: the run's input, each step, and what feeds the output."""
    nodes = [(s.id, s.tool or s.kind, s.dependencies()) for s in plan.order()]
    inputs_to = [s.id for s in plan.order() if any(r.root == "input" for r in references(s.inputs))]
    to_output = sorted({r.root for r in references(plan.output) if r.root != "input"})
    return _flowchart(nodes, None, inputs_to=inputs_to, to_output=to_output)


def run_mermaid(record: RunRecord) -> str:
    """A flowchart of a run's steps, coloured by status."""
    nodes = [(s.id, s.kind, s.depends_on) for s in record.steps]
    return _flowchart(nodes, {s.id: s.status.value for s in record.steps})
