"""The Python API reference (docs/api.md), generated from the docstrings of
`taskloom.__all__`: each function's and class's signature and docstring, each model's
fields, each class's public methods, and the error tree.

Regenerate it after changing the public API, and check that it is current:

    python -m taskloom.views.apidoc           # rewrite docs/api.md
    python -m taskloom.views.apidoc --check   # exit 1 if it is stale
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from taskloom.schema import write_or_check

API_PATH = Path(__file__).resolve().parents[2] / "docs" / "api.md"
"""Where a checkout keeps the generated page."""
_SECTION = re.compile(r"^(Args|Arguments|Returns|Yields|Raises|Attributes|Example|Examples):$")
_INTRO = """# Python API reference

Generated from the docstrings of `taskloom.__all__` by `python -m taskloom.views.apidoc`
(a test checks that it is current). Everything else is importable but may change. The
guides: [plan-format.md](plan-format.md), [cli.md](cli.md),
[calibration.md](calibration.md), [evaluation.md](evaluation.md).
"""


def public() -> dict[str, Any]:
    """Every public name of `taskloom`, and what it is."""
    package = importlib.import_module("taskloom")  # the top of the layers: imported late
    return {name: getattr(package, name) for name in package.__all__}


def parameters(obj: Any) -> list[str]:
    """The parameter names a reader of the page must find for `obj` (and, for a class,
    for each of its public methods)."""
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        return []  # its members are listed; its signature is Enum's functional API
    if inspect.isclass(obj) and issubclass(obj, BaseModel):
        found = list(obj.model_fields)  # its fields' table
    else:
        found = [p.name for p in _signature_params(obj) if not p.name.startswith("_")]
    if inspect.isclass(obj):
        for _, method in _methods(obj):
            found += [p.name for p in _signature_params(method) if p.name not in ("self", "cls")]
    return found


def api_markdown() -> str:
    """The whole page."""
    names = public()
    functions = {n: o for n, o in names.items() if inspect.isfunction(o)}
    errors = {n: o for n, o in names.items() if inspect.isclass(o) and issubclass(o, Exception)}
    classes = {n: o for n, o in names.items() if n not in functions and n not in errors}
    parts = [_INTRO, "## Functions\n"]
    parts += [_function(name, obj) for name, obj in sorted(functions.items())]
    parts.append("## Classes\n")
    parts += [_class(name, obj) for name, obj in sorted(classes.items())]
    parts.append("## Errors\n")
    parts += [_error(name, obj) for name, obj in sorted(errors.items())]
    return "\n".join(parts).rstrip() + "\n"


def _function(name: str, obj: Any, *, level: str = "###") -> str:
    return f"{level} `{name}`\n\n```python\n{name}{_signature(obj)}\n```\n\n{_doc(obj)}"


def _class(name: str, cls: type) -> str:
    out = [f"### `{name}`\n"]
    if issubclass(cls, enum.Enum):
        out.append(_doc(cls))
        out.append("Members: " + ", ".join(f"`{m.name}` (`{m.value!r}`)" for m in cls) + "\n")
        return "\n".join(out)
    if issubclass(cls, BaseModel):
        out.append(_doc(cls))
        out.append(_fields(cls))
    else:
        out.append(f"```python\n{name}{_signature(cls)}\n```\n")
        out.append(_doc(cls))
    for method_name, method in _methods(cls):
        if isinstance(method, property):
            out.append(f"#### `{name}.{method_name}` (property)\n\n{_doc(method)}")
        else:
            out.append(_function(f"{name}.{method_name}", method, level="####"))
    return "\n".join(out)


def _error(name: str, cls: type) -> str:
    bases = ", ".join(b.__name__ for b in cls.__bases__)
    return f"### `{name}({bases})`\n\n```python\n{name}{_signature(cls)}\n```\n\n{_doc(cls)}"


def _fields(model: type[BaseModel]) -> str:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for field_name, info in model.model_fields.items():
        kind = _cell(str(info.annotation).replace("typing.", ""))
        default = "required" if info.is_required() else _cell(repr(info.get_default()))
        rows.append(f"| `{field_name}` | `{kind}` | {default} | {_cell(info.description or '')} |")
    return "\n".join(rows) + "\n"


def _methods(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined in the class itself, in source order."""
    if issubclass(cls, BaseModel | enum.Enum):
        own = {
            n: v for n, v in vars(cls).items() if inspect.isfunction(v) or isinstance(v, property)
        }
    else:
        own = {n: v for n, v in vars(cls).items() if callable(v) or isinstance(v, property)}
    return [
        (n, v.__func__ if isinstance(v, classmethod | staticmethod) else v)
        for n, v in own.items()
        if not n.startswith("_") and not isinstance(v, type)
    ]


def _signature_params(obj: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return []


class _Annotation:
    """An annotation written as its source text (not quoted, as `inspect` would)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [
        p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p
        for p in sig.parameters.values()
    ]
    ret = sig.return_annotation
    sig = sig.replace(
        parameters=params, return_annotation=_Annotation(ret) if isinstance(ret, str) else ret
    )
    return re.sub(r" at 0x[0-9a-f]+", "", str(sig))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(obj: Any) -> str:
    """A Google-style docstring as Markdown: section entries become list items."""
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines: list[str] = []
    in_section = False
    for line in doc.splitlines():
        if _SECTION.match(line.strip()) and not line.startswith(" "):
            lines += ["", f"**{line.strip()[:-1]}**", ""]
            in_section = True
        elif in_section and line.startswith("    ") and not line.startswith("        "):
            lines.append(f"- {line.strip()}")
        elif in_section and line.startswith("        "):
            lines[-1] += f" {line.strip()}"
        else:
            in_section = False
            lines.append(line)
    return "\n".join(lines).strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/api.md, or with `--check` report whether it is stale (exit 1)."""
    command = "python -m taskloom.views.apidoc"
    return write_or_check(API_PATH, api_markdown(), command=command, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
