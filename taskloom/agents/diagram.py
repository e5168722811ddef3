"""A plan as a Mermaid flowchart, for `taskloom plan --mermaid`."""

from __future__ import annotations

from taskloom.plan import Plan, references


def mermaid(plan: Plan) -> str:
    """The plan's DAG as Mermaid `flowchart TD` text: inputs, steps, and the output."""
    lines = ["flowchart TD"]
    uses_input = False
    for step in plan.order():
        label = f"{step.id}: {step.tool or step.kind}".replace('"', "'")
        lines.append(f'    {step.id}["{label}"]')
        if any(r.root == "input" for r in references(step.inputs)):
            uses_input = True
            lines.append(f"    input --> {step.id}")
        lines.extend(f"    {dep} --> {step.id}" for dep in step.dependencies())
    feeding = sorted({r.root for r in references(plan.output) if r.root != "input"})
    if feeding:
        lines.append("    output([output])")
        lines.extend(f"    {root} --> output" for root in feeding)
    if uses_input:
        lines.insert(1, "    input([input])")
    return "\n".join(lines)
