"""A tools module that fails as a worker loads it: the worker dies at start, every time.

Each import appends a line to the file `CRASH_LOG` names, so a test counts the starts.
"""

from __future__ import annotations

import os
import sys

with open(os.environ["CRASH_LOG"], "a") as log:
    log.write(f"start {os.getpid()}\n")
sys.stderr.write("crash_tools: the tools backend is unreachable\n")
sys.stderr.flush()
os._exit(4)
