"""Pictures of plans and runs: Mermaid text, and the HTML page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom import InlineDispatcher, Settings, Workflow, load_plan, run, tool
from taskloom.step import StepStatus
from taskloom.tools import ToolRegistry
from taskloom.views import plan_mermaid, render_html, run_mermaid
from taskloom.workflows.record import RunRecord

ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = ROOT / "artifacts"


@tool
def work(tag: str, seconds: float = 0.0) -> dict[str, Any]:
    time.sleep(seconds)
    return {"tag": tag}


@tool
def fail(tag: str) -> None:
    raise ValueError(f"{tag} is broken")


def sample_run() -> RunRecord:
    plan = load_plan(
        {
            "version": 1,
            "steps": [
                {
                    "id": "fetch",
                    "kind": "tool",
                    "tool": "work",
                    "inputs": {"tag": "f", "seconds": 0.05},
                },
                {"id": "parse", "kind": "tool", "tool": "work", "inputs": {"tag": "${fetch.tag}p"}},
                {
                    "id": "side",
                    "kind": "tool",
                    "tool": "work",
                    "inputs": {"tag": "s", "seconds": 0.02},
                },
                {"id": "broken", "kind": "tool", "tool": "fail", "inputs": {"tag": "$side.tag"}},
                {
                    "id": "after_broken",
                    "kind": "tool",
                    "tool": "work",
                    "inputs": {"tag": "$broken.tag"},
                },
            ],
            "output": "$parse.tag",
        }
    )
    settings = Settings(retry_backoff_s=0.01, max_attempts=1)
    wf = Workflow.from_plan(plan, tools=ToolRegistry([work, fail]))
    return run(
        wf, {}, dispatcher=InlineDispatcher(tools=wf.tools, settings=settings), settings=settings
    )


def test_plan_mermaid_draws_every_dependency() -> None:
    plan = load_plan(json.loads((ROOT / "examples" / "triage.json").read_text()))
    text = plan_mermaid(plan)
    assert text.startswith("flowchart TD\n")
    for edge in ["contact --> reply", "docs --> reply", "booking --> reply", "intent --> docs"]:
        assert f"  {edge}\n" in text
    assert 'intent["intent<br/><small>classify</small>"]' in text


def test_run_mermaid_colours_steps_by_status() -> None:
    text = run_mermaid(sample_run())
    assert "  class fetch,parse,side done\n" in text
    assert "  class broken failed\n" in text
    assert "  class after_broken skipped\n" in text


def test_html_has_every_step_in_graph_and_timeline_and_stays_small() -> None:
    record = sample_run()
    page = render_html(record)
    for step in record.steps:
        assert page.count(f'data-step="{step.id}"') == (2 if step.started_at else 1), step.id
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # 500 steps with chunky values: still well under 2 MB
    big = RunRecord(run_id="big")
    for i in range(500):
        s = big.step(f"s{i}", "extract")
        s.depends_on = [f"s{i - 1}"] if i % 10 else []
        s.status, s.worker, s.value = StepStatus.DONE, f"w{i % 4}", {"text": "x" * 5000}
        s.started_at, s.finished_at, s.queue_ms = 100.0 + i, 100.5 + i, 12.0
    assert len(render_html(big).encode()) < 2_000_000


@pytest.mark.skipif(
    not shutil.which("chromedriver") and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_html_renders_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    record = sample_run()
    page = tmp_path / "run.html"
    page.write_text(render_html(record))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_window_size(1400, 900)
        driver.get(page.as_uri())
        graph = {
            e.get_attribute("data-step")
            for e in driver.find_elements(By.CSS_SELECTOR, "#graph [data-step]")
        }
        timeline = {
            e.get_attribute("data-step")
            for e in driver.find_elements(By.CSS_SELECTOR, "#timeline [data-step]")
        }
        assert graph == {s.id for s in record.steps}
        assert timeline == {s.id for s in record.steps if s.started_at}
        node = driver.find_element(By.CSS_SELECTOR, '#graph [data-step="parse"]')
        ActionChains(driver).move_to_element(node).perform()
        detail = driver.find_element(By.ID, "detail").text
        assert detail.startswith("parse") and '"output"' in detail and '"cost_usd"' in detail
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "run.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_show_command_writes_html_and_mermaid_and_rejects_bad_paths(
    tmp_path: Path,
    taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from taskloom.cli import main

    def cli(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main(list(args))
        out, err = capsys.readouterr()
        return int(e.value.code or 0), out, err

    monkeypatch.setenv("TASKLOOM_TEST_COUNTS", str(tmp_path / "counts"))
    plan = {
        "version": 1,
        "steps": [
            {"id": "contact", "kind": "tool", "tool": "work", "inputs": {"name": "c"}},
            {"id": "docs", "kind": "tool", "tool": "missing", "inputs": {"q": "$contact.name"}},
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    tools = str(ROOT / "tests" / "workflows" / "crashy_tools.py")
    code, _, _ = cli(
        "run", str(tmp_path / "plan.json"), "--inline", "--tools", tools, "--run-id", "r1"
    )
    assert code == 1  # docs calls a tool that is not registered
    code, out, _ = cli("show", "r1", "--mermaid")
    assert code == 0 and out.startswith("flowchart TD") and "class docs failed" in out
    page = tmp_path / "r1.html"
    code, _, _ = cli("show", "r1", "--html", str(page))
    assert code == 0 and 'data-step="contact"' in page.read_text()
    code, _, err = cli("show", "r1", "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert code == 2 and "can't write" in err and err.count("\n") == 1
    code, _, err = cli("show", "nope", "--mermaid")
    assert code == 2 and "no run 'nope'" in err


def test_the_html_page_shows_confidence_and_flags() -> None:
    from taskloom.views.html import render_html
    from tests.workflows.test_review import flagged_record

    page = render_html(flagged_record())
    assert "2 values need review" in page
    assert 'class="flag"' in page and "flagged for review" in page
    assert '"accepted": false' in page and '"confidence": 0.41' in page
