"""The newest versions pyproject's ranges allow, checked: what moved past the lock, then
mypy and the fast tests on them. Run by `make newest` with the throwaway venv's python.

It prints one line per finding and a last `newest:` line that sums them up. Its exit
code is 1 when mypy or a test failed there, but CI reports it and goes on
(docs/development.md): a registry release must not break main; the lock keeps main on
the versions CI passed with, and this names what the next `make lock` has to fix.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";")[0].strip()
    return found


def run(python: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "TASKLOOM_UNLOCKED": "1"}
    done = subprocess.run([python, "-m", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    return done.returncode, done.stdout + done.stderr


def main(python: str) -> int:
    locked = pins((ROOT / "requirements-dev.lock").read_text())
    _, frozen = run(python, "pip", "freeze", "--all", "--exclude-editable")
    newest = pins(frozen)
    moved = sorted(
        f"{n} {locked[n]} → {v}" for n, v in newest.items() if n in locked and locked[n] != v
    )
    added = sorted(f"{n} {v}" for n, v in newest.items() if n not in locked and n != "taskloom")
    print(f"newest: {len(moved)} packages past the lock: {', '.join(moved) or 'none'}")
    if added:
        print(f"newest: not in the lock: {', '.join(added)}")
    failed = []
    code, out = run(python, "mypy")
    if code != 0:
        failed.append("mypy")
        print("newest: mypy failed:\n" + "\n".join(out.splitlines()[-15:]))
    code, out = run(
        python, "pytest", "-q", "-p", "no:cacheprovider", "-m", "not model and not slow"
    )
    names = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    if code != 0:
        failed.append(f"{len(names)} fast tests" if names else "the fast tests")
        print("newest: failing tests:\n  " + "\n  ".join(names or out.splitlines()[-15:]))
    last = out.strip().splitlines()[-1] if out.strip() else ""
    ok = re.search(r"(\d+) passed", last)
    bad = sum(int(n) for n in re.findall(r"(\d+) (?:failed|errors?)\b", last))
    print(f"newest: fast tests: {ok.group(1) if ok else 0} ok, {bad} not")
    if failed:
        print(f"newest: FAILED on the newest versions: {', '.join(failed)}; the lock still passes")
        return 1
    print("newest: the newest versions pass mypy and the fast tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
