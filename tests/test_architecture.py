"""The layout's rules, checked: imports point one way, no module imports itself in a
circle, the CLI holds no policy, modules stay small. docs/architecture.md states the same
rules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "taskloom"

LAYERS = [
    {
        "errors",
        "config",
        "step",
        "plan",
        "logs",
        "deadline",
        "extras",
        "schema",
        "calibration",
        "tracing",
        "adapters",
    },
    {"chat"},
    {"tools", "labelled", "bank", "lessons"},
    {"dispatch"},
    {"workflows"},
    {"agents"},
    {"workers"},
    {"views", "testing"},
    {"api"},
    {"cli", "__main__"},
]
"""Bottom to top: a module imports from its own layer or the ones below it."""

CLI_MAY_IMPORT = {"api", "views", "errors", "config", "cli"}
MAX_LINES = 500


def _part(module: str) -> str:
    """`taskloom.dispatch.redis` → `dispatch`; `taskloom.step` → `step`."""
    return module.split(".")[1]


def _rank(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every taskloom module a file imports, anywhere in it (TYPE_CHECKING and
    function-level imports included), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("taskloom."):
                found.append((node.lineno, node.module))
            elif node.module == "taskloom":
                found += [(node.lineno, f"taskloom.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("taskloom.")]
    return found


def _modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name != "taskloom.__init__":  # the public API re-exports every layer, lazily
            out.append((path, name))
    return out


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path, name in _modules():
        own = _rank(_part(name))
        for line, imported in _imports(path):
            if _rank(_part(imported)) > own:
                wrong.append(f"{name}:{line} imports {imported}")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_core_modules_import_no_subpackage() -> None:
    core = LAYERS[0]
    wrong = [
        f"{name}:{line} imports {imported}"
        for path, name in _modules()
        if _part(name) in core
        for line, imported in _imports(path)
        if _part(imported) not in core
    ]
    assert not wrong, "\n".join(wrong)


def test_the_cli_calls_the_api_and_holds_no_policy() -> None:
    wrong = [
        f"{name}:{line} imports {imported}"
        for path, name in _modules()
        if _part(name) == "cli"
        for line, imported in _imports(path)
        if _part(imported) not in CLI_MAY_IMPORT
    ]
    assert not wrong, "the CLI may import only taskloom.api, views and core:\n" + "\n".join(wrong)


def test_the_layer_rule_can_fail() -> None:
    """The scan sees an upward import wherever it is written."""
    probe = PACKAGE / "chat" / "base.py"
    assert all(_part(m) in LAYERS[0] | {"chat"} for _, m in _imports(probe))
    assert _rank("cli") > _rank("api") > _rank("workers") > _rank("dispatch") > _rank("chat")


def test_modules_stay_small() -> None:
    big = {
        name: n
        for path, name in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def _declaration_lines(source: str) -> int:
    """Lines of a module's decorators: click's commands, options and arguments."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                lines.update(range(d.lineno, (d.end_lineno or d.lineno) + 1))
    return len(lines)


def _commands(source: str) -> int:
    """Click commands defined in a module (`@x.command(...)` on a function)."""
    return sum(
        any(
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Attribute)
            and d.func.attr == "command"
            for d in node.decorator_list
        )
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
    )


def test_the_cli_is_thin() -> None:
    # Option declarations grow with the commands; the code around them is where policy
    # would creep in. About a screen a command: parse, call the API, print.
    sources = [p.read_text() for p in (PACKAGE / "cli").glob("*.py")]
    lines = sum(len(s.splitlines()) - _declaration_lines(s) for s in sources)
    commands = sum(_commands(s) for s in sources)
    assert lines < 50 * commands, (
        f"the CLI has {lines} lines of code for {commands} commands; move policy into taskloom.api"
    )


def _module_names(package: Path) -> dict[str, Path]:
    """Every module of a package by dotted name; a package is its `__init__`."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _edges(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, at module level, inside functions and
    under `TYPE_CHECKING` alike: a circle through a function-level import still ties
    the two modules together, and one under `TYPE_CHECKING` still breaks mypy's and a
    reader's order. `from pkg import sub` is an edge to the submodule when `sub` is one;
    `from pkg import name` is an edge to the package's `__init__`."""
    root = next(iter(known)).split(".")[0]
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for a in node.names:
                found.add(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module)
    return {m for m in found if m in known and m != name and m.split(".")[0] == root}


def import_circles(package: Path) -> list[list[str]]:
    """Each set of modules that import one another in a circle (Tarjan's strongly
    connected components of the import graph), sorted."""
    known = _module_names(package)
    graph = {name: _edges(name, path, known) for name, path in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(part) > 1:
                circles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def test_no_module_imports_itself_in_a_circle() -> None:
    circles = import_circles(PACKAGE)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_a_circle_through_a_function_or_a_package_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("A = 1\ndef f():\n    from pkg.sub.b import B\n    return B\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from pkg import A\nB = A\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert import_circles(pkg) == [["pkg", "pkg.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("B = 2\n")
    assert import_circles(pkg) == []
