"""The README's main job, run as the README says, on the real default model.

The command is read from the README's "Set up" block and run in a fresh process on the
embedded default (a local Redis-compatible server, a worker, the bundled 270M model).
The reply must read as the support agent's answer to the customer: it names her, it
does not speak as her, it is a few sentences, and it ends at a sentence boundary within
the reply step's length budget.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

ROOT = Path(__file__).parent.parent
CUSTOMER_VOICE = ("this is maria", "my order", "i want a refund", "arrived broken and i", "call me")


def readme_command() -> list[str]:
    """The main job's command, as the README's Set up section writes it."""
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "taskloom run examples/triage.json" in ln)
    words = shlex.split(line.split("&&")[-1])
    assert words[0].endswith("taskloom"), words
    return [sys.executable, "-m", "taskloom", *words[1:]]


def test_the_readme_main_job_replies_to_the_customer_in_a_few_whole_sentences(
    taskloom_home: Path,
) -> None:
    done = subprocess.run(
        readme_command(), cwd=ROOT, capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    output = json.loads(done.stdout)
    reply = output["reply"]
    print(f"\nreply ({len(reply)} characters): {reply}")
    plan = json.loads((ROOT / "examples" / "triage.json").read_text())
    step = next(s for s in plan["steps"] if s["id"] == "reply")
    budget = 2 * step["inputs"].get("max_tokens", 256)  # generate's maxLength
    assert output["who"] == "Maria Lopez"
    assert "Maria" in reply, "the reply addresses the customer by name"
    lowered = reply.lower()
    assert not [v for v in CUSTOMER_VOICE if v in lowered], "the reply speaks as the customer"
    assert len(reply) <= budget
    assert reply.endswith((".", "!", "?")), "the reply stops at a sentence boundary"
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", reply) if s]
    assert 1 <= len(sentences) <= 5, sentences
