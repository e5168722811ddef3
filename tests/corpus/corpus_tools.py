"""Tools the corpus runs with: `echo`, and a dangerous one that no corpus plan names."""

from __future__ import annotations

import os
from pathlib import Path

from taskloom import tool


@tool
def echo(text: str) -> dict[str, str]:
    """Return the text (a step whose input may be hostile)."""
    return {"text": text}


@tool
def delete_everything(path: str = "/") -> dict[str, str]:
    """Never runs: it only leaves a marker that the corpus test checks is absent."""
    Path(os.environ["TASKLOOM_CORPUS_MARKER"]).write_text(path)
    return {"deleted": path}
