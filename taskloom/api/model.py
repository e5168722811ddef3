"""Which GGUF file the local model loads, as a library call (`taskloom model path`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskloom.chat.load import SCRIPTED, check_model_file, default_model_path
from taskloom.config import Settings, settings_for
from taskloom.errors import InputError


def model_path(settings: Settings | None = None, **options: Any) -> Path:
    """The model file workers and local runs load: `settings.model` (TASKLOOM_MODEL or
    --model) when set, else the default model's, assembled from its package on first use.

    Raises:
        InputError: the model is the scripted fake, which has no file.
        ModelFileError: the named file is missing or not a GGUF.
        MissingExtraError: no model is named and the default model is not installed.
    """
    settings = settings_for(settings, options)
    if settings.model == SCRIPTED:
        raise InputError("the scripted model has no file; name a GGUF with --model PATH")
    if settings.model:
        path = Path(settings.model).expanduser().resolve()
        check_model_file(path)
        return path
    return default_model_path()
