"""The deployment files: the systemd unit passes `systemd-analyze verify` (where it is
installed), and compose.yaml has Redis under AOF, a supervisor per GPU box, a runs worker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "taskloom-worker@.service").read_text()
    assert "/opt/taskloom/.venv/bin/taskloom worker" in unit
    # verify checks that ExecStart exists: point it at this checkout's taskloom.
    here = str(Path(sys.executable).parent / "taskloom")
    (tmp_path / "taskloom-worker@slm.service").write_text(
        unit.replace("/opt/taskloom/.venv/bin/taskloom", here)
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "taskloom-worker@slm.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [ln for ln in done.stderr.splitlines() if "taskloom-worker" in ln]
    assert done.returncode == 0 and not problems, done.stderr


def test_the_unit_drains_on_stop_and_does_not_restart_bad_configuration() -> None:
    unit = (DEPLOY / "taskloom-worker@.service").read_text()
    for line in ("KillMode=mixed", "KillSignal=SIGTERM", "RestartPreventExitStatus=2"):
        assert line in unit.splitlines()
    assert "EnvironmentFile=/etc/taskloom/%i.env" in unit


def test_compose_runs_redis_with_aof_a_supervisor_per_gpu_box_and_a_runs_worker() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    box = services["gpu-box"]
    assert box["command"][:3] == ["worker", "--gpus", "all"]
    devices = box["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["runs"]["command"][:3] == ["worker", "--queue", "runs"]
    for name in ("gpu-box", "runs"):
        assert services[name]["environment"]["TASKLOOM_REDIS_URL"] == "redis://redis:6379/0"
