"""The public API is exactly what `__all__` says, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import taskloom


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert taskloom.__all__ == sorted(taskloom.__all__)
    assert set(taskloom.__all__) == set(taskloom._WHERE)
    for name in taskloom.__all__:
        assert getattr(taskloom, name) is not None, name


def test_all_where_and_the_type_checking_imports_name_the_same_things() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(taskloom.__file__).read_text(encoding="utf-8"))
    guarded = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    typed = {}
    for node in ast.walk(guarded):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                typed[alias.name] = node.module.removeprefix("taskloom.")
    assert set(typed) == set(taskloom.__all__)
    for name, module in typed.items():  # each name loads from where the type checker looks
        assert module.startswith(taskloom._WHERE[name]), (name, module, taskloom._WHERE[name])


def test_the_api_names_what_the_issue_promises() -> None:
    promised = {"run", "submit", "run_goal", "Flow", "workflow", "Workflow", "ModelHost"}
    promised |= {"TaskloomError", "ChatModel", "Dispatcher", "RunStore"}
    assert promised <= set(taskloom.__all__)
    assert taskloom.run.__module__ == "taskloom.api.local"


def test_light_commands_do_not_import_langgraph() -> None:
    code = "import sys, taskloom.cli; print('langgraph' in sys.modules, 'llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_error_is_a_taskloom_error_named_error() -> None:
    from taskloom import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    for cls in classes:
        if cls is errors.TaskloomWarning:
            continue
        assert issubclass(cls, errors.TaskloomError), cls
        assert cls.__name__.endswith("Error"), cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"
