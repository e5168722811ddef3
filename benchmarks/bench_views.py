"""Pictures of a 500-step run: HTML size and render time in headless Chromium.

    python benchmarks/bench_views.py

Targets (issue 6): the page is under 2 MB and renders in under 2 s. Printed beside
a 50-step page measured the same way, so the ratio shows how rendering scales.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from taskloom.views import render_html
from taskloom.workers.job import StepStatus
from taskloom.workflows.record import RunRecord


def synthetic_run(n: int) -> RunRecord:
    """A finished run of n steps in chains of ten, on four workers, with real-sized values."""
    record = RunRecord(run_id=f"bench-{n}", target="bench.json")
    for i in range(n):
        s = record.step(f"s{i}", "extract")
        s.depends_on = [f"s{i - 1}"] if i % 10 else []
        s.inputs = {"text": "$input.email", "examples": []}
        s.status, s.worker, s.model = StepStatus.DONE, f"gpu{i % 4}", "gemma-3-270m"
        s.value = {"name": "Maria Lopez", "order_id": f"A-{i}", "notes": "x" * 300}
        s.queue_ms, s.started_at, s.finished_at = 15.0, 1000.0 + i * 0.1, 1000.25 + i * 0.1
        s.prompt_tokens, s.completion_tokens, s.cost_usd = 180, 24, 4e-6
    record.tally()
    return record


def render_seconds(driver: object, path: Path) -> float:
    """Navigation start to load event end, as the browser measured it."""
    driver.get(path.as_uri())  # type: ignore[attr-defined]
    timing = driver.execute_script(  # type: ignore[attr-defined]
        "const t = performance.getEntriesByType('navigation')[0];"
        "return [t.startTime, t.loadEventEnd];"
    )
    return float(timing[1] - timing[0]) / 1000


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as d:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={d}/p",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            results = {}
            for n in (50, 500):
                started = time.perf_counter()
                page = render_html(synthetic_run(n))
                build_s = time.perf_counter() - started
                path = Path(d) / f"run{n}.html"
                path.write_text(page)
                render_seconds(driver, path)  # warm the browser
                render_s = min(render_seconds(driver, path) for _ in range(3))
                results[n] = (len(page.encode()), build_s, render_s)
                print(
                    f"{n:4} steps: {len(page.encode()) / 1e6:.2f} MB, built in {build_s:.3f} s, "
                    f"rendered in {render_s:.3f} s"
                )
        finally:
            driver.quit()
    size, _, render_s = results[500]
    print(
        f"500-step page: {size / 2e6:.2f}× the 2 MB limit, {render_s / 2:.2f}× the 2 s limit; "
        f"render time 500 ÷ 50 steps: {render_s / results[50][2]:.1f}×"
    )


if __name__ == "__main__":
    main()
