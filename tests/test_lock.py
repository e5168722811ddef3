"""The dev and CI environment is exactly requirements-dev.lock plus requirements-learn.lock
(`make install`).

`pip freeze` of the running interpreter is compared with the lock both ways: every
pinned package at its pinned version, and nothing installed that the lock lacks. The
newest-versions check (`make newest`) runs the fast tests outside the lock on purpose
and sets TASKLOOM_UNLOCKED=1, which skips this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LOCK = Path(__file__).parent.parent / "requirements-dev.lock"
LEARN_LOCK = LOCK.with_name("requirements-learn.lock")

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TASKLOOM_UNLOCKED")), reason="the newest-versions check (make newest)"
)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """`name==version` lines (comments, `-e` and blank lines left out), by normalised name."""
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[normalise(name.split("[")[0])] = version.split(";")[0].strip()
    return found


def test_pins_reads_the_lock_format() -> None:
    text = "redis==8.2.0\n    # via rq\nPyYAML==6.0.3 ; python_version >= '3.8'\n-e .\n"
    assert pins(text) == {"redis": "8.2.0", "pyyaml": "6.0.3"}


def test_the_environment_is_exactly_the_lock() -> None:
    locked = pins(LOCK.read_text()) | pins(LEARN_LOCK.read_text())
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    # a local label is the build, not the release (torch 2.13.0+cpu is torch 2.13.0)
    installed = {n: v.split("+")[0] for n, v in pins(frozen).items()}
    wrong = {n: (v, installed.get(n)) for n, v in locked.items() if installed.get(n) != v}
    extra = sorted(set(installed) - set(locked) - {"taskloom"})
    assert not wrong, f"installed ≠ lock (name: (locked, installed)): {wrong}; run make install"
    assert not extra, f"installed but in neither lock: {extra}; run make lock"
