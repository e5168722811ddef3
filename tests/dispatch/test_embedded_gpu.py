"""The embedded cluster and GPUs: its workers are given the run's GPU settings, and a GPU
this llama.cpp build can't use fails the run at once (exit 2), not in every worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskloom.chat import gpu
from taskloom.config import Settings
from taskloom.dispatch.embedded import EmbeddedCluster
from taskloom.errors import ConfigError

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
cpu_build = pytest.mark.skipif(gpu.supports_offload(), reason="needs a CPU-only llama.cpp build")


def test_the_workers_get_the_runs_gpu_settings(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the worker was started with, not /proc/PID/environ: a worker that has already
    # exited (a zombie) reads as empty there, and on a loaded CI machine one did.
    started: list[tuple[list[str], dict[str, str]]] = []
    popen = subprocess.Popen

    def spy(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append((cmd, kwargs.get("env") or {}))
        return popen(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    with EmbeddedCluster(Settings(model="scripted", n_gpu_layers=0)):
        pass
    (env,) = [env for cmd, env in started if "worker" in cmd]
    assert env["TASKLOOM_N_GPU_LAYERS"] == "0"


@cpu_build
def test_a_gpu_on_a_cpu_build_fails_the_cluster_before_it_starts(taskloom_home: Path) -> None:
    cluster = EmbeddedCluster(Settings(model="scripted", gpu=0))
    with pytest.raises(ConfigError, match="--force-reinstall --no-cache-dir"):
        cluster.start()
    assert not cluster._procs


@cpu_build
def test_taskloom_run_with_taskloom_gpu_set_exits_2_in_one_line(taskloom_home: Path) -> None:
    args = ["run", str(EXAMPLES / "triage.json"), "--input", f"@{EXAMPLES / 'triage_input.json'}"]
    done = subprocess.run(
        [sys.executable, "-m", "taskloom.cli", *args, "--model", "scripted"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TASKLOOM_GPU": "0"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TASKLOOM_GPU" in lines[0] and "CMAKE_ARGS" in lines[0]
