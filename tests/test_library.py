"""taskloom as a library: `taskloom.run` takes the embedded default, prints nothing
unless the application configures logging, and refuses unknown options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import taskloom
from taskloom.errors import ConfigError
from taskloom.workflows.store import SqliteRunStore

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "triage.json"
INPUTS = json.loads((ROOT / "examples" / "triage_input.json").read_text())


def test_run_with_no_redis_takes_the_embedded_default(taskloom_home: Path) -> None:
    record = taskloom.run(str(PLAN), inputs=INPUTS, model="scripted")
    assert record.status == taskloom.RunStatus.DONE
    assert set(record.output) == {"who", "intent", "reply"}
    workers = {s.worker for s in record.steps}
    assert "inline" not in workers and "" not in workers  # worker processes ran them
    kept = SqliteRunStore(taskloom.Settings(home=taskloom_home).state_path).load(record.run_id)
    assert kept.status == taskloom.RunStatus.DONE  # and `taskloom resume` can find it


def test_run_takes_a_plan_object_inline(taskloom_home: Path) -> None:
    plan = taskloom.load_plan(json.loads(PLAN.read_text()))
    record = taskloom.run(plan, INPUTS, is_inline=True, model="scripted", max_attempts=1)
    assert record.status == "done"
    assert {s.worker for s in record.steps} == {"inline"}


def test_an_unknown_option_is_a_config_error(taskloom_home: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option workerz"):
        taskloom.run(str(PLAN), INPUTS, workerz=2)


def _python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TASKLOOM_HOME": str(home), "HOME": os.environ["HOME"]}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )


def test_a_library_run_prints_nothing_unless_logging_is_configured(tmp_path: Path) -> None:
    run = (
        "import taskloom, json; r = taskloom.run('examples/triage.json', "
        "inputs=json.load(open('examples/triage_input.json')), is_inline=True, model='scripted')"
    )
    quiet = _python(f"{run}; print(r.status)", tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("done\n", "")
    loud = _python(f"import logging; logging.basicConfig(level=logging.INFO); {run}", tmp_path)
    assert "step_finished" in loud.stderr and "run_id=" in loud.stderr
    assert loud.stdout == ""


@pytest.mark.model
def test_the_readme_library_command_prints_done(tmp_path: Path) -> None:
    code = (
        "import taskloom, json; print(taskloom.run('examples/triage.json', "
        "inputs=json.load(open('examples/triage_input.json'))).status)"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
