"""Which chat model a process keeps resident: one place decides it from the settings.

`settings.model` is a GGUF path, `"scripted"` for the shipped fake, or None for the
default model. Workers, inline runs and the local planner all load through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskloom.chat.base import ChatModel
from taskloom.chat.gpu import placement
from taskloom.chat.model_file import check_model_file, default_model_path
from taskloom.config import Settings
from taskloom.extras import DEFAULT_MODEL, LLAMA, check_local, require_local

if TYPE_CHECKING:
    from taskloom.chat.llama.host import ModelHost

__all__ = [
    "SCRIPTED",
    "check_local_model",
    "check_model",
    "check_model_file",
    "default_host",
    "default_model_path",
    "load_model",
]

SCRIPTED = "scripted"
"""The model name that selects `ScriptedChatModel`, the shipped fake (no file)."""


def load_model(settings: Settings) -> ChatModel:
    """The resident model that `settings.model` names.

    Raises:
        ModelFileError: the GGUF file is missing or corrupt.
        MissingExtraError: llama-cpp-python or the default model is not installed.
    """
    if settings.model == SCRIPTED:
        from taskloom.chat.scripted import ScriptedChatModel

        return ScriptedChatModel()
    require_local(LLAMA)
    return default_host(settings)


def default_host(settings: Settings | None = None) -> ModelHost:
    """A host for `settings.model`, or for the default model when it is None, on the GPU
    the settings or CUDA_VISIBLE_DEVICES name (`taskloom.chat.gpu.placement`)."""
    from taskloom.chat.llama.host import ModelHost  # llama-cpp only where a model loads

    settings = settings if settings is not None else Settings()
    path = Path(settings.model).expanduser() if settings.model else default_model_path()
    gpu, n_gpu_layers = placement(settings)
    return ModelHost(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=n_gpu_layers,
        gpu=gpu,
        concurrency=settings.concurrency,
        speculate=settings.speculate,
    )


def check_model(settings: Settings) -> None:
    """Fail early, without loading, when `settings.model` names a file that won't load.

    Raises:
        ModelFileError: the file is missing, unreadable or not a GGUF.
    """
    if settings.model and settings.model != SCRIPTED:
        check_model_file(Path(settings.model).expanduser())


def check_local_model(settings: Settings) -> None:
    """Fail early unless what loading `settings.model` needs is installed: llama-cpp-python,
    and the default model's package when no model is named.

    Raises:
        MissingExtraError: naming `pip install "taskloom[local]"`.
    """
    if settings.model == SCRIPTED:
        return
    check_local(LLAMA)
    if not settings.model:
        check_local(DEFAULT_MODEL, hint=", or pass --model PATH / set TASKLOOM_MODEL")
