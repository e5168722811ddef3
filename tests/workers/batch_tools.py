"""Tools for the concurrent-worker tests: each execution is logged to a file, not Redis."""

from __future__ import annotations

import os
import time

from taskloom.tools import tool


@tool
def logged(log: str, name: str, sleep_s: float = 0.0) -> dict[str, str]:
    """Append `start <name> <pid>` to `log`, sleep, append `end <name> <pid>`."""
    with open(log, "a") as f:
        f.write(f"start {name} {os.getpid()}\n")
    time.sleep(sleep_s)
    with open(log, "a") as f:
        f.write(f"end {name} {os.getpid()}\n")
    return {"name": name}
