"""The SLM task kinds, one module each, and the registry of plain Python tools."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskloom import calibration as calibrations
from taskloom.calibration import Calibration
from taskloom.chat import ChatModel
from taskloom.errors import TaskInputError
from taskloom.logs import get_logger
from taskloom.plan import StepKind
from taskloom.tools import classify, extract, fill_slots, filter, generate
from taskloom.tools.base import Kind, Outcome, Usage, run_kind
from taskloom.tools.registry import OUTPUT_MODEL_KEY, Tool, ToolRegistry, tool

log = get_logger(__name__)

KINDS: dict[str, Kind] = {
    StepKind.EXTRACT: extract,
    StepKind.FILL_SLOTS: fill_slots,
    StepKind.FILTER: filter,
    StepKind.CLASSIFY: classify,
    StepKind.GENERATE: generate,
}


def run_task(
    kind: str,
    inputs: dict[str, Any],
    *,
    output: dict[str, Any] | None = None,
    model: ChatModel | None = None,
    tools: ToolRegistry | None = None,
    tool_name: str | None = None,
    output_retries: int = 2,
    is_reviewed: bool = True,
    calibration: Calibration | None = None,
) -> Outcome:
    """Run one step of any kind: an SLM kind on `model`, or a registered Python tool.

    Raises:
        TaskInputError, ToolError, SchemaError: the step can't run as written.
        OutputValidationError: the model's output kept failing validation.

    An `output` schema that names a pydantic model (`OUTPUT_MODEL_KEY`, from
    `Flow`'s `output=Model`) registered in `tools` has the model's validators run in
    the re-ask loop, their messages sent back to the model.

    `is_reviewed=False` skips a kind's review of the answer (absence decided by the
    runtime): an escalation to the LLM trusts the LLM's nulls. `calibration`: the
    confidences' mapping and thresholds (default: the one the package ships).
    """
    if kind == StepKind.TOOL:
        registry = tools if tools is not None else ToolRegistry()
        found = registry.get(tool_name or "")
        return Outcome(value=found.invoke(inputs), usage=Usage(model=f"tool:{found.name}"))
    if kind not in KINDS:
        raise TaskInputError(f"kind {kind!r} can't run here (SLM kinds: {', '.join(KINDS)})")
    if model is None:
        raise TaskInputError(f"kind {kind!r} needs a model, and none was given")
    return run_kind(
        KINDS[kind],
        kind,
        inputs,
        output=output,
        model=model,
        output_retries=output_retries,
        is_reviewed=is_reviewed,
        calibration=calibration if calibration is not None else calibrations.load(),
        output_model=_output_model(output, tools),
    )


def _output_model(
    output: dict[str, Any] | None, tools: ToolRegistry | None
) -> type[BaseModel] | None:
    """The registered pydantic model an output schema names, if it is registered here."""
    name = output.get(OUTPUT_MODEL_KEY) if output else None
    if not isinstance(name, str) or tools is None:
        return None
    found = tools.models.get(name)
    if found is None:
        log.warning("output_model_not_registered", model=name)
    return found


__all__ = ["KINDS", "Outcome", "Tool", "ToolRegistry", "Usage", "run_task", "tool"]
