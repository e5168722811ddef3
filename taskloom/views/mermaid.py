"""Mermaid flowcharts of a plan, or of a run coloured by each step's status."""

from __future__ import annotations

from collections.abc import Iterable

from taskloom.plan import Plan
from taskloom.workflows.record import RunRecord

STATUS_STYLES = {
    "pending": "fill:#f4f4f5,stroke:#a1a1aa",
    "running": "fill:#dbeafe,stroke:#2563eb",
    "done": "fill:#dcfce7,stroke:#16a34a",
    "failed": "fill:#fee2e2,stroke:#dc2626",
    "skipped": "fill:#fef9c3,stroke:#ca8a04",
    "cancelled": "fill:#e4e4e7,stroke:#52525b",
}


def _flowchart(nodes: Iterable[tuple[str, str, list[str]]], statuses: dict[str, str] | None) -> str:
    lines = ["flowchart TD"]
    edges = []
    for step_id, kind, deps in nodes:
        lines.append(f'  {step_id}["{step_id}<br/><small>{kind}</small>"]')
        edges += [f"  {dep} --> {step_id}" for dep in deps]
    lines += edges
    if statuses:
        for status, style in STATUS_STYLES.items():
            members = [sid for sid, st in statuses.items() if st == status]
            if members:
                lines.append(f"  classDef {status} {style}")
                lines.append(f"  class {','.join(members)} {status}")
    return "\n".join(lines) + "\n"


def plan_mermaid(plan: Plan) -> str:
    """A flowchart of the plan's steps and dependencies."""
    return _flowchart(((s.id, s.kind, s.dependencies()) for s in plan.steps), None)


def run_mermaid(record: RunRecord) -> str:
    """A flowchart of a run's steps, coloured by status."""
    nodes = [(s.id, s.kind, s.depends_on) for s in record.steps]
    return _flowchart(nodes, {s.id: s.status.value for s in record.steps})
