"""The HTML view at any shape, in a real headless Chromium: a chain, a fan-out of 16,
the triage DAG and 500 steps. Each gets a screenshot under `artifacts/`; layout
properties are read from the page itself (the boxes' positions as the browser drew them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from taskloom import load_plan
from taskloom.step import StepStatus
from taskloom.views import render_html
from taskloom.workflows.record import RunRecord

ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = ROOT / "artifacts"
WINDOW = (1400, 900)

pytestmark = pytest.mark.skipif(
    not shutil.which("chromedriver") and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def finished(record: RunRecord, deps: dict[str, list[str]], kind: str = "tool") -> RunRecord:
    for i, (sid, after) in enumerate(deps.items()):
        s = record.step(sid, kind)
        s.depends_on = after
        s.status, s.worker = StepStatus.DONE, f"w{i % 3}"
        s.started_at, s.finished_at, s.queue_ms = 10.0 + i * 0.1, 10.2 + i * 0.1, 5.0
    record.tally()
    return record


def chain() -> RunRecord:
    return finished(
        RunRecord(run_id="chain"), {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(6)}
    )


def fan_out(n: int = 16) -> RunRecord:
    deps: dict[str, list[str]] = {"split": []} | {f"part{i}": ["split"] for i in range(n)}
    return finished(RunRecord(run_id="fanout"), deps | {"join": [f"part{i}" for i in range(n)]})


def triage() -> RunRecord:
    plan = load_plan(json.loads((ROOT / "examples" / "triage.json").read_text()))
    record = RunRecord(run_id="triage")
    deps = {s.id: s.dependencies() for s in plan.order()}
    return finished(record, deps)


def big(n: int = 500) -> RunRecord:
    deps = {f"s{i}": [f"s{i - 1}"] if i % 10 else [] for i in range(n)}
    return finished(RunRecord(run_id="big"), deps, kind="extract")


BOXES = """
return [...document.querySelectorAll('#graph .node rect')].map(r => {
  const b = r.getBoundingClientRect();
  return [r.parentNode.getAttribute('data-step'), b.left, b.top, b.width, b.height];
});
"""


THROUGH_BOXES = """
const boxes = [...document.querySelectorAll('#graph .node')].map(g => {
  const m = g.transform.baseVal[0].matrix, r = g.querySelector('rect');
  return [g.dataset.step, m.e, m.f, r.width.baseVal.value, r.height.baseVal.value];
});
const hits = [];
document.querySelectorAll('#graph path.edge').forEach((path, i) => {
  const length = path.getTotalLength();
  for (let at = 0; at <= length; at += 3) {
    const q = path.getPointAtLength(at);
    for (const [id, x, y, w, h] of boxes) {
      if (q.x > x + 1 && q.x < x + w - 1 && q.y > y + 1 && q.y < y + h - 1) hits.push([i, id]);
    }
  }
});
return hits;
"""


def edges_through_boxes(browser: Any) -> list[Any]:
    """(edge, box) for each edge that passes inside a box, sampled every 3 units."""
    return list(browser.execute_script(THROUGH_BOXES))


def open_page(browser: Any, record: RunRecord, tmp_path: Path, name: str) -> dict[str, Any]:
    """Load the page, screenshot it, and read back what the browser drew."""
    page = render_html(record)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page and " src=" not in page
    path = tmp_path / f"{name}.html"
    path.write_text(page)
    browser.get(path.as_uri())
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"view-{name}.png"))
    boxes = {b[0]: tuple(b[1:]) for b in browser.execute_script(BOXES)}
    timeline_top = browser.execute_script(
        "return document.getElementById('timeline').getBoundingClientRect().top"
    )
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert set(boxes) == {s.id for s in record.steps}
    return {"boxes": boxes, "timeline_top": float(timeline_top), "page": page}


def columns(boxes: dict[str, tuple[float, ...]], ids: list[str]) -> int:
    return len({round(boxes[i][0]) for i in ids})


def overlaps(boxes: dict[str, tuple[float, ...]]) -> list[tuple[str, str]]:
    items = list(boxes.items())
    found = []
    for i, (a, (ax, ay, aw, ah)) in enumerate(items):
        for b, (bx, by, bw, bh) in items[i + 1 :]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                found.append((a, b))
    return found


def test_a_chain_reads_left_to_right(browser: Any, tmp_path: Path) -> None:
    seen = open_page(browser, chain(), tmp_path, "chain")
    lefts = [seen["boxes"][f"s{i}"][0] for i in range(6)]
    assert lefts == sorted(lefts) and len(set(lefts)) == 6
    assert len({seen["boxes"][f"s{i}"][1] for i in range(6)}) == 1  # one row
    assert overlaps(seen["boxes"]) == [] and edges_through_boxes(browser) == []


def test_a_fan_out_of_16_is_a_grid_and_the_timeline_stays_on_screen(
    browser: Any, tmp_path: Path
) -> None:
    seen = open_page(browser, fan_out(16), tmp_path, "fanout16")
    parts = [f"part{i}" for i in range(16)]
    assert columns(seen["boxes"], parts) >= 3
    tops = [seen["boxes"][p][1] for p in parts]
    assert max(tops) - min(tops) < 6 * 52  # at most six rows of boxes
    assert seen["timeline_top"] < WINDOW[1]  # the timeline starts on the first screen
    assert overlaps(seen["boxes"]) == []
    assert edges_through_boxes(browser) == []  # routed along the gaps of the grid


def test_the_triage_dag_is_layered_and_no_edge_runs_behind_a_box(
    browser: Any, tmp_path: Path
) -> None:
    seen = open_page(browser, triage(), tmp_path, "triage")
    b = seen["boxes"]
    assert b["intent"][0] < b["docs"][0] < b["reply"][0]  # layers, left to right
    assert b["contact"][0] == b["intent"][0] == b["booking"][0]
    assert overlaps(b) == []
    assert edges_through_boxes(browser) == []  # contact → reply goes round docs


def test_500_steps_are_shown_whole_then_pan_and_zoom(browser: Any, tmp_path: Path) -> None:
    seen = open_page(browser, big(500), tmp_path, "big500")
    assert len(seen["page"].encode()) < 2_000_000
    height = browser.execute_script(
        "return document.getElementById('graph').getBoundingClientRect().height"
    )
    assert height <= 560  # shown whole, scaled down, not 23 rows at full size
    right = max(x + w for x, _, w, _ in seen["boxes"].values())
    assert right < WINDOW[0]  # every box is on screen at first

    def view_box() -> list[float]:
        text = browser.execute_script(
            "return document.getElementById('graph').getAttribute('viewBox')"
        )
        return [float(v) for v in text.split()]

    full = view_box()
    browser.execute_script(
        "const g = document.getElementById('graph'), r = g.getBoundingClientRect();"
        "g.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: r.left + 100,"
        " clientY: r.top + 100, bubbles: true, cancelable: true}));"
    )
    zoomed = view_box()
    assert zoomed[2] < full[2] and zoomed[3] < full[3]  # zoomed in around the pointer
    from selenium.webdriver.common.action_chains import ActionChains

    graph = browser.find_element("id", "graph")
    ActionChains(browser).move_to_element_with_offset(graph, 0, 0).click_and_hold().move_by_offset(
        -200, -50
    ).release().perform()
    panned = view_box()
    assert panned[0] > zoomed[0] and panned[2] == zoomed[2]  # dragged left: moved right
    browser.save_screenshot(str(ARTIFACTS / "view-big500-zoomed.png"))
    browser.find_element("id", "zoom-fit").click()
    assert view_box() == full
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
