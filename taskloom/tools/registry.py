"""Plain Python tools (`kind: tool`): typed functions whose schema comes from their signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from taskloom.errors import ToolError


@dataclass(frozen=True)
class Tool:
    """A registered Python function, with the pydantic model of its arguments."""

    name: str
    fn: Callable[..., Any]
    arguments: type[BaseModel]
    description: str = ""
    parameters: tuple[str, ...] = ()  # read once: pydantic's model_fields is not thread-safe

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (what a planner sees)."""
        return self.arguments.model_json_schema()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def invoke(self, arguments: dict[str, Any], *, step_id: str | None = None) -> Any:
        """Validate the arguments against the signature, then call the function."""
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            raise ToolError(
                f"tool {self.name!r}: {where}: {first['msg'].lower()}; "
                f"expected arguments {sorted(self.parameters)}",
                step_id=step_id,
            ) from e
        return self.fn(**{name: getattr(parsed, name) for name in self.parameters})


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a typed function a tool: `@tool` or `@tool(name="lookup")`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        fields: dict[str, Any] = {}
        for p in inspect.signature(f).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ToolError(f"tool {f.__name__!r}: *args and **kwargs can't be described")
            annotation = p.annotation if p.annotation is not p.empty else Any
            fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        model = create_model(f"{f.__name__}_arguments", __config__=config, **fields)
        return Tool(
            name=name or f.__name__,
            fn=f,
            arguments=model,
            description=inspect.getdoc(f) or "",
            parameters=tuple(fields),
        )

    return wrap(fn) if fn is not None else wrap


OUTPUT_MODEL_KEY = "x-taskloom-model"
"""The key of an output schema that names its registered pydantic model (no import path:
a worker only looks the name up among the models its `--tools` modules define)."""


def model_name(model: type[BaseModel]) -> str:
    """The name an output model is registered and referred to by."""
    return model.__qualname__


@dataclass
class ToolRegistry:
    """The tools a run may call, by name. A plan can only call what is registered.

    It also holds pydantic output models (`add_model`), by name: a step whose output
    schema names one (`OUTPUT_MODEL_KEY`, set by `Flow` for `output=Model`) has the
    model's validators run in its re-ask loop wherever the step runs with this registry.
    """

    tools: dict[str, Tool] = field(default_factory=dict)
    models: dict[str, type[BaseModel]] = field(default_factory=dict)

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self.tools = {}
        self.models = {}
        for t in tools:
            self.add(t)

    def add_model(self, model: type[BaseModel]) -> str:
        """Register a pydantic output model; return the name its schema carries."""
        name = model_name(model)
        self.models[name] = model
        return name

    def add(self, fn: Tool | Callable[..., Any]) -> Tool:
        """Register a tool (or a plain typed function) and return it."""
        t = fn if isinstance(fn, Tool) else tool(fn)
        self.tools[t.name] = t
        return t

    def tool(self, fn: Callable[..., Any]) -> Tool:
        """Decorator: register a typed function as a tool."""
        return self.add(fn)

    def get(self, name: str, *, step_id: str | None = None) -> Tool:
        """The tool with this name.

        Raises:
            ToolError: it is not registered; the message lists what is.
        """
        if name not in self.tools:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(
                f"tool {name!r} is not registered (registered: {known}); "
                "register it with ToolRegistry.tool or pass --tools",
                step_id=step_id,
            )
        return self.tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools.values())

    def catalogue(self) -> list[dict[str, Any]]:
        """Name, description and argument schema of every tool, for a planner."""
        return [{"name": t.name, "description": t.description, "arguments": t.schema} for t in self]
