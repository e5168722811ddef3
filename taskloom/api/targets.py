"""Run targets: the workflow a target names, and the tools it needs here and on workers.

A target is a `Workflow`, a `Plan`, a plan file (`*.json`), or `file.py:name` /
`module:name` naming a workflow; `Cluster` (and so `taskloom.run`) and `taskloom.submit`
load it the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from taskloom.config import Settings
from taskloom.plan import SLM_KINDS, Plan
from taskloom.tools import Tool, ToolRegistry
from taskloom.workflows.definition import Workflow
from taskloom.workflows.target import load_target, load_tools, tool_modules

__all__ = ["Target", "ToolsArg", "needs_slm", "registry", "resolve_target", "worker_modules"]

Target = Workflow | Plan | str | Path
ToolsArg = ToolRegistry | Iterable[Tool | Callable[..., Any]]


def resolve_target(
    target: Target, *, settings: Settings, inputs: dict[str, Any], tools: ToolRegistry
) -> Workflow:
    """The workflow a target names, with `tools` registered on it."""
    if isinstance(target, Workflow):
        for t in tools:
            target.tools.add(t)
        return target
    if isinstance(target, Plan):
        return Workflow.from_plan(target, tools=tools)
    return load_target(str(target), max_steps=settings.max_steps, inputs=inputs, tools=tools)


def needs_slm(workflow: Workflow) -> bool:
    """Whether a run may need the small model: a plan with an SLM step, or any workflow
    (its steps are known only as it runs)."""
    return workflow.plan is None or any(s.kind in SLM_KINDS for s in workflow.plan.steps)


def registry(tools: ToolsArg, modules: list[str]) -> ToolRegistry:
    """The tools of `modules` (imported here) and `tools`, in one registry."""
    registry = load_tools(modules)
    for t in tools:
        registry.add(t)
    return registry


def worker_modules(label: str, modules: list[str], workflow: Workflow) -> list[str]:
    """What local workers import to find the run's tools: the modules named, the
    target's module, and, for a workflow passed in as an object, its tools' modules."""
    specs = tool_modules(label, modules)
    if label:
        return specs
    for t in workflow.tools:
        module = t.fn.__module__
        is_importable = module != "__main__" and not module.startswith("taskloom_target_")
        spec = module if is_importable else inspect.getsourcefile(t.fn)
        if spec and spec not in specs:
            specs.append(spec)
    return specs
