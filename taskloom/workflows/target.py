"""Loading what to run: a plan file, `file.py:name`, or `module:name`; and tool modules."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from taskloom.errors import InputError, JobRejectedError, TargetError, UserError
from taskloom.plan import Plan
from taskloom.tools import Tool, ToolRegistry
from taskloom.tools.checks import load_plan
from taskloom.workflows.definition import Workflow


def read_json(text: str, *, what: str) -> Any:
    """Decode JSON text, or `@FILE` to read it from a file.

    Raises:
        InputError: unreadable file or invalid JSON, with line and column.
    """
    source = what
    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"{what}: can't read {path}: {e.strerror}") from e
    return decode_json(
        text,
        source=source,
        error=InputError,
        hint="; pass a JSON object or @FILE",
        too_deep="; flatten it",
        unicode_fix="send valid Unicode",
    )


def read_inputs_file(path: str | Path) -> list[dict[str, Any]]:
    """A JSONL file of run inputs: one JSON object a line, one run a line.

    Blank lines at the end are ignored; elsewhere they are a mistake, so that the Nth
    run is always line N.

    Raises:
        InputError: the file can't be read, is empty, or a line is not a JSON object
            (naming the file and the line).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").rstrip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise InputError(f"can't read inputs file {path}: {why}") from e
    found = []
    for n, text in enumerate(lines, start=1):
        where = f"{path}:{n}"
        if not text.strip():
            raise InputError(f"{where}: blank line; one JSON object a line, one run each")
        try:
            json.loads(text)  # for a message with the column; decode_json refuses the rest
        except json.JSONDecodeError as e:
            raise InputError(
                f"{where}: not valid JSON (column {e.colno}: {e.msg}); one JSON object a line"
            ) from e
        value = decode_json(text, source=where, error=InputError)
        if not isinstance(value, dict):
            raise InputError(f"{where}: {_json_kind(value)}, not an object; one JSON object a line")
        found.append(value)
    if not found:
        raise InputError(f"inputs file {path} is empty; write one JSON object a line")
    return found


def _json_kind(value: Any) -> str:
    """`[1]` → "an array": what a JSON value is, in JSON's words."""
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def decode_json(
    text: str,
    *,
    source: str,
    error: type[UserError],
    hint: str = "",
    too_deep: str = "",
    unicode_fix: str = "save valid Unicode",
) -> Any:
    """Strict JSON that can be written back as UTF-8, or `error` with one line that says
    where it went wrong (line and column) and, with `hint`, what to do."""
    try:
        value = strict_json(text)
    except json.JSONDecodeError as e:
        raise error(
            f"{source} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}){hint}"
        ) from e
    except _NotJSONError as e:
        raise error(f"{source} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise error(f"{source} is nested too deeply{too_deep}") from e
    if not _is_encodable(value):
        raise error(f"{source} has a lone surrogate (e.g. \\ud800); {unicode_fix}")
    return value


class _NotJSONError(ValueError):
    """A constant Python's json accepts and JSON does not (NaN, Infinity)."""


def _reject_constant(name: str) -> Any:
    raise _NotJSONError(f"{name} is not a JSON number; use null or a number")


def strict_json(text: str) -> Any:
    """`json.loads`, refusing NaN and Infinity (other parsers, and Redis payloads, would)."""
    return json.loads(text, parse_constant=_reject_constant)


def _is_encodable(value: Any) -> bool:
    """Whether `value` can be written back as UTF-8 JSON (records, payloads, checkpoints)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_plan(path: Path, *, max_steps: int, inputs: dict[str, Any] | None = None) -> Plan:
    """Load and validate a plan file.

    Raises:
        TargetError: the file can't be read or is not JSON.
        PlanValidationError: every problem with the plan.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TargetError(f"can't read plan {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise TargetError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    data = decode_json(text, source=str(path), error=TargetError, too_deep=" to be a plan")
    return load_plan(data, source=str(path), max_steps=max_steps, inputs=inputs)


def load_module(spec: str) -> ModuleType:
    """Import `path/to/file.py` or `package.module`.

    Raises:
        TargetError: no such file or module, or it fails to import.
    """
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise TargetError(f"no such file {spec}; give file.py:name or module:name")
        name = f"taskloom_target_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise TargetError(f"can't import {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise TargetError(f"importing {spec} failed: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as e:
        raise TargetError(f"can't import module {spec!r}: {e}") from e


def load_workflow(spec: str) -> Workflow:
    """The Workflow named by `file.py:name` or `module:name`.

    Raises:
        TargetError: the file, module or attribute does not exist, or is not a workflow.
    """
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise TargetError(f"{spec!r} is not a target; use plan.json, file.py:name or module:name")
    module = load_module(module_part)
    found = getattr(module, attr, None)
    if found is None:
        raise TargetError(f"{module_part} has no {attr!r}; check the name after the colon")
    if not isinstance(found, Workflow):
        raise TargetError(
            f"{spec} is a {type(found).__name__}, not a workflow; decorate it with @workflow"
        )
    return found


def load_tools(specs: list[str]) -> ToolRegistry:
    """Collect the tools defined in modules or files (`module`, `file.py`, `x:registry`)."""
    registry = ToolRegistry()
    for spec in specs:
        module_part, _, attr = spec.rpartition(":") if spec.count(":") else (spec, "", "")
        module = load_module(module_part or spec)
        values = [getattr(module, attr)] if attr else list(vars(module).values())
        for value in values:
            if isinstance(value, ToolRegistry):
                for t in value:
                    registry.add(t)
                registry.models.update(value.models)
            elif isinstance(value, Tool):
                registry.add(value)
            elif _is_own_model(value, module):
                registry.add_model(value)
    return registry


def _is_own_model(value: Any, module: ModuleType) -> bool:
    """A pydantic model defined in `module` (not imported into it): an output model."""
    return (
        isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
    )


def load_target(
    spec: str, *, max_steps: int, inputs: dict[str, Any] | None, tools: ToolRegistry
) -> Workflow:
    """A plan file or a Python workflow, ready to compile."""
    if spec.endswith(".json"):
        plan = read_plan(Path(spec), max_steps=max_steps, inputs=inputs)
        return Workflow.from_plan(plan, tools=tools)
    workflow = load_workflow(spec)
    for t in tools:
        workflow.tools.add(t)
    return workflow


def collect(specs: list[str]) -> tuple[ToolRegistry, dict[str, Workflow]]:
    """The tools and workflows defined in modules or files (`--tools` on a worker).

    A workflow's own tools are collected too, so a worker can run its tool steps.
    """
    tools = ToolRegistry()
    workflows: dict[str, Workflow] = {}
    for spec in specs:
        module = load_module(spec)
        for name, value in vars(module).items():
            if isinstance(value, Workflow):
                workflows[value.name] = workflows[name] = value
                for t in value.tools:
                    tools.add(t)
            elif isinstance(value, ToolRegistry):
                for t in value:
                    tools.add(t)
                tools.models.update(value.models)
            elif isinstance(value, Tool):
                tools.add(value)
            elif _is_own_model(value, module):
                tools.add_model(value)
    return tools, workflows


def rebuild(
    plan: dict[str, Any] | None,
    target: str,
    *,
    tools: ToolRegistry,
    registered: dict[str, Workflow] | None = None,
) -> Workflow:
    """The workflow a stored run ran: its plan, else the Python workflow its target names.

    Args:
        plan: the run's plan, as stored; None for a Python workflow.
        target: `file.py:name`, `module:name`, or a workflow's bare name.
        tools: tools to register on the workflow.
        registered: a worker's workflows; only these may run there (nothing is imported).

    Raises:
        JobRejectedError: `registered` is given and lacks the workflow.
        TargetError: the target can't be imported.
    """
    if plan:
        return Workflow.from_plan(load_plan(plan, max_steps=10**6), tools=tools)
    name = target.rpartition(":")[2]
    if registered is not None:
        if name not in registered:
            raise JobRejectedError(
                f"workflow {name!r} is not registered on this worker; start the runs worker "
                "with --tools MODULE naming the module that defines it"
            )
        return registered[name]
    workflow = load_workflow(target)
    for t in tools:
        workflow.tools.add(t)
    return workflow


def tool_modules(target: str, tool_specs: list[str]) -> list[str]:
    """What local workers import for a target: the `--tools` modules and a workflow's module."""
    is_python = ":" in target and not target.endswith(".json")
    module = target.rpartition(":")[0] if is_python else ""
    return [*tool_specs, module] if module else list(tool_specs)
