"""The bad-input corpus (tests/corpus/): every file through the CLI, one line, right exit code.

The file's prefix says how it goes in:
- `plan_*`: `taskloom validate FILE`;
- `run_*`: `taskloom run FILE --inline --model scripted`;
- `input_*`: `taskloom run _plan_echo.json --inline --input @FILE`;
- `payload_*`: the file's bytes become a job's data in Redis, next to a good job, and a
  `taskloom worker --burst` takes both: the worker exits 0, the bad job fails with the
  expected error, and the good one still runs.

`manifest.json` holds each file's expected exit code and a fragment of its error. The
CLI runs in-process (`taskloom.cli.main`, the console script's entry point), which keeps
54 cases within seconds; the payload cases use real worker subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskloom.cli import main
from taskloom.config import Settings
from taskloom.dispatch import payload
from taskloom.dispatch.broker import Broker
from taskloom.step import StepJob, StepStatus

CORPUS = Path(__file__).parent.parent / "corpus"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
TOOLS = str(CORPUS / "corpus_tools.py")


def test_the_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.iterdir() if not p.name.startswith(("_", "manifest"))}
    files -= {"corpus_tools.py", "__pycache__"}
    assert files == set(MANIFEST)
    assert len(files) >= 40


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if not n.startswith("payload_")))
def test_cli_input(
    name: str,
    taskloom_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = MANIFEST[name]
    marker = tmp_path / "marker"
    monkeypatch.setenv("TASKLOOM_CORPUS_MARKER", str(marker))
    path = str(CORPUS / name)
    if name.startswith("plan_"):
        argv = ["validate", path]
    elif name.startswith("run_"):
        argv = ["run", path, "--inline", "--model", "scripted", "--tools", TOOLS]
    else:
        plan = str(CORPUS / "_plan_echo.json")
        argv = ["run", plan, "--inline", "--tools", TOOLS, "--input", f"@{path}", "--json"]
    code, out, err = cli(argv, capsys)
    assert code == expected["exit"], err[:500]
    assert not marker.exists()  # no plan or input made the dangerous tool run
    assert "Traceback" not in err and "internal error" not in err
    if code == 0:
        assert out
        return
    errors = [line for line in err.splitlines() if line.startswith("taskloom: error:")]
    assert len(errors) == 1, err[:500]
    assert expected["error"] in errors[0], errors[0][:500]
    assert len(errors[0]) < 2000  # a huge input is not echoed back whole


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if n.startswith("payload_")))
def test_corrupt_payload(name: str, redis_url: str, tmp_path: Path) -> None:
    expected = MANIFEST[name]
    secret = expected.get("secret")
    broker = Broker(redis_url, settings=Settings())
    data: Any = (CORPUS / name).read_bytes()
    bad_id, *_ = broker.enqueue(
        queue="slm", data=data, run_id="corpus", step_id="bad", description=name
    )
    good = StepJob(run_id="corpus", step_id="good", kind="tool", tool="echo", inputs={"text": "ok"})
    body = good.model_dump(mode="json")
    encoded = payload.encode("step", body, max_attempts=1, secret=secret)
    broker.enqueue(queue="slm", data=encoded, run_id="corpus", step_id="good", description="ok")
    env = {**os.environ, "TASKLOOM_CORPUS_MARKER": str(tmp_path / "marker")}
    env.pop("TASKLOOM_SECRET", None)
    if secret:
        env["TASKLOOM_SECRET"] = secret
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskloom.cli",
            "worker",
            "--burst",
            "--model",
            "scripted",
            "--redis-url",
            redis_url,
            "--tools",
            TOOLS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert worker.returncode == expected["exit"], worker.stderr[-2000:]
    assert "Traceback" not in worker.stderr
    bad = broker.wait_notify("corpus", "bad", timeout_s=5)
    assert bad is not None and bad.result is not None
    assert bad.result.status == StepStatus.FAILED
    assert bad.result.error is not None
    assert expected["error"] in bad.result.error.message, bad.result.error
    ok = broker.wait_notify("corpus", "good", timeout_s=5)
    assert ok is not None and ok.result is not None and ok.result.status == StepStatus.DONE
    assert not (tmp_path / "marker").exists()
    if name == "payload_pickle.bin":  # planted here on purpose: keep the suite's scan clean
        broker.redis.delete(f"rq:job:{bad_id}")
