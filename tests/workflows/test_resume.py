"""A coordinator killed mid-run resumes from its checkpoint without re-running finished steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent


def taskloom(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_resume_after_a_crash_runs_only_unfinished_steps(tmp_path: Path) -> None:
    counts = tmp_path / "counts.txt"
    plan = {
        "version": 1,
        "steps": [
            *(
                {"id": f"fan{i}", "kind": "tool", "tool": "work", "inputs": {"name": f"fan{i}"}}
                for i in range(4)
            ),
            {
                "id": "boom",
                "kind": "tool",
                "tool": "crash_once",
                "inputs": {"name": "boom"},
                "after": ["fan0", "fan1", "fan2", "fan3"],
            },
            {"id": "last", "kind": "tool", "tool": "work", "inputs": {"name": "last-${boom.name}"}},
        ],
        "output": "$last.name",
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {
        **os.environ,
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "TASKLOOM_TEST_COUNTS": str(counts),
        "PYTHONPATH": str(HERE),
    }
    env.pop("TASKLOOM_REDIS_URL", None)
    tools = "--tools=crashy_tools"
    first = taskloom(
        "run", str(tmp_path / "plan.json"), tools, "--inline", "--run-id", "crashy", env=env
    )
    assert first.returncode == 9, first.stderr  # the process died in the middle of the run
    assert Counter(counts.read_text().split()) == Counter(
        {"fan0": 1, "fan1": 1, "fan2": 1, "fan3": 1, "boom": 1}
    )

    second = taskloom("resume", "crashy", tools, "--json", env=env)
    assert second.returncode == 0, second.stderr
    record = json.loads(second.stdout)
    assert record["status"] == "done" and record["output"] == "last-boom"
    # every finished step ran exactly once across both processes; boom ran again
    assert Counter(counts.read_text().split()) == Counter(
        {"fan0": 1, "fan1": 1, "fan2": 1, "fan3": 1, "boom": 2, "last-boom": 1}
    )
    assert {s["id"] for s in record["steps"]} == {"fan0", "fan1", "fan2", "fan3", "boom", "last"}
    assert all(s["status"] == "done" for s in record["steps"])
