"""Tools for the crash-and-resume tests: each call is counted in a file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from taskloom import tool


def _count(name: str) -> None:
    with Path(os.environ["TASKLOOM_TEST_COUNTS"]).open("a") as f:
        f.write(name + "\n")


@tool
def work(name: str, seconds: float = 0.0) -> dict[str, Any]:
    """Count the call, then sleep."""
    _count(name)
    time.sleep(seconds)
    return {"name": name}


@tool
def crash_once(name: str) -> dict[str, Any]:
    """Kill the whole process the first time (the marker file says whether it has)."""
    _count(name)
    marker = Path(os.environ["TASKLOOM_TEST_COUNTS"] + ".crashed")
    if not marker.exists():
        marker.touch()
        time.sleep(0.5)  # let the finished steps' checkpoints land, as in a real crash
        os._exit(9)
    return {"name": name}
