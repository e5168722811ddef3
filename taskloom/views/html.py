"""A run as one self-contained HTML file: the plan graph and a timeline per worker.

Layout happens in Python (`layout.py`: layers, barycentre ordering, wide layers
wrapped into a grid), and the page is plain SVG with a few lines of inline script for
the hover panel and for panning and zooming the graph: no network fetches, nothing to
load, and it renders fast.
"""

from __future__ import annotations

import html
import json
from typing import Any

from taskloom.views import layout
from taskloom.views.mermaid import STATUS_STYLES
from taskloom.workflows.record import RunRecord, StepRecord

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 38, 56, 14
TIMELINE_W, LANE_H, LABEL_W = 960, 18, 140
MAX_VALUE_CHARS = 400
CELL_W, CELL_H = NODE_W + GAP_X, NODE_H + GAP_Y
GRAPH_MAX_H = 560  # a bigger graph is shown whole, scaled down: zoom in to read it


def _fill(status: str) -> tuple[str, str]:
    parts = dict(
        p.split(":") for p in STATUS_STYLES.get(status, STATUS_STYLES["pending"]).split(",")
    )
    return parts["fill"], parts["stroke"]


def _short(value: Any) -> Any:
    """A value cut to a readable size, so 500-step pages stay small."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def _graph(steps: list[StepRecord]) -> str:
    """The plan as SVG: a layered grid (see `layout`), drawn at full size in its viewBox;
    the page's script pans and zooms it."""
    ids = [s.id for s in steps]
    edges = [(d, s.id) for s in steps for d in s.depends_on if d != s.id]
    placed = layout.grid(ids, edges)

    def at(column: int, row: int) -> tuple[int, int]:
        # a column shorter than the tallest is centred on it
        shift = (placed.rows - placed.column_rows[column]) * CELL_H // 2
        return 20 + column * CELL_W, 20 + shift + row * CELL_H

    pos = {sid: at(*cell) for sid, cell in placed.cells.items()}
    width = 40 + max(placed.columns, 1) * CELL_W - GAP_X
    height = 40 + max(placed.rows, 1) * CELL_H - GAP_Y
    out = [
        f'<svg id="graph" viewBox="0 0 {width} {height}" data-width="{width}" '
        f'data-height="{height}" width="100%" height="{min(height, GRAPH_MAX_H)}" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    for dep, sid in edges:
        if dep in pos and sid in pos:
            points = _route(
                dep, sid, placed, pos, [at(*c) for c in placed.routes.get((dep, sid), [])]
            )
            out.append(f'<path class="edge" d="{_path(points)}"/>')
    for s in steps:
        x, y = pos[s.id]
        fill, stroke = _fill(s.status.value)
        sid = html.escape(s.id)
        trust = _trust(s)
        out.append(
            f'<g class="node" data-step="{sid}" transform="translate({x},{y})">'
            f"<title>{sid} ({html.escape(s.kind)}): {s.status.value}{trust}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" stroke="{stroke}"/>'
            + ('<text x="136" y="16" class="flag">⚑</text>' if s.accepted is False else "")
            + f'<text x="8" y="16" class="id">{sid[:22]}</text>'
            f'<text x="8" y="31" class="kind">{html.escape(s.kind)} · {s.status.value}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _route(
    dep: str,
    sid: str,
    placed: layout.Layout,
    pos: dict[str, tuple[int, int]],
    waypoints: list[tuple[int, int]],
) -> list[tuple[int, int, bool]]:
    """The points an edge passes, each with whether it is reached by a straight line.

    It leaves its step's right side and enters the next one's left side; in a wrapped
    layer it runs along the gap between rows to the layer's edge, so it never crosses
    a box of its own layer; through a waypoint it runs straight across the free cell.
    """
    (x1, y1), (x2, y2) = pos[dep], pos[sid]
    points: list[tuple[int, int, bool]] = [(x1 + NODE_W, y1 + NODE_H // 2, False)]
    column, _ = placed.cells[dep]
    last = placed.spans[column][1]
    if column < last:  # out of a wrapped layer: right, along the gap below the box
        gap = y1 + NODE_H + GAP_Y // 2
        points += [(x1 + NODE_W + GAP_X // 2, gap, False)]
        points += [(20 + last * CELL_W + NODE_W + GAP_X // 4, gap, True)]
    for x, y in waypoints:
        points += [(x, y + NODE_H // 2, False), (x + NODE_W, y + NODE_H // 2, True)]
    column, _ = placed.cells[sid]
    first = placed.spans[column][0]
    if column > first:  # into a wrapped layer: along the gap above the box
        gap = y2 - GAP_Y // 2
        points += [(20 + first * CELL_W - GAP_X // 4, gap, False)]
        points += [(x2 - GAP_X // 2, gap, True)]
    points.append((x2, y2 + NODE_H // 2, False))
    return points


def _path(points: list[tuple[int, int, bool]]) -> str:
    """SVG path data: straight where marked, else a horizontal S-curve."""
    x0, y0, _ = points[0]
    d = [f"M{x0},{y0}"]
    for x, y, is_straight in points[1:]:
        if is_straight or y == y0:
            d.append(f"L{x},{y}")
        else:
            mid = (x0 + x) // 2
            d.append(f"C{mid},{y0} {mid},{y} {x},{y}")
        x0, y0 = x, y
    return " ".join(d)


def _timeline(steps: list[StepRecord]) -> str:
    # (step, queued at, started at, finished at), for the steps that ran; the wait is
    # its worker starting up (process start, model load), then the queue
    spans = [
        (s, s.started_at - (s.startup_ms + s.queue_ms) / 1000, s.started_at, s.finished_at)
        for s in steps
        if s.started_at and s.finished_at
    ]
    if not spans:
        return (
            '<svg id="timeline" width="400" height="30"><text x="4" y="20">no step ran</text></svg>'
        )
    start = min(queued for _, queued, _, _ in spans)
    end = max(finished for _, _, _, finished in spans)
    scale = TIMELINE_W / max(end - start, 1e-6)
    lanes: dict[str, list[float]] = {}  # worker → when each of its lanes is free again
    placed: list[tuple[StepRecord, float, float, float, str, int]] = []
    for s, queued, started, finished in sorted(spans, key=lambda span: span[2]):
        worker = s.worker or "?"
        ends = lanes.setdefault(worker, [])
        lane = next((i for i, free_at in enumerate(ends) if free_at <= queued), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = finished
        placed.append((s, queued, started, finished, worker, lane))
    offsets, y = {}, 24
    for worker, ends in lanes.items():
        offsets[worker] = y
        y += len(ends) * LANE_H + 10
    out = [
        f'<svg id="timeline" width="{LABEL_W + TIMELINE_W + 20}" height="{y + 10}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{LABEL_W}" y="14" class="axis">0 s</text>',
        f'<text x="{LABEL_W + TIMELINE_W - 60}" y="14" class="axis">{end - start:.2f} s</text>',
    ]
    for worker, top in offsets.items():
        out.append(f'<text x="4" y="{top + 13}" class="worker">{html.escape(worker[:20])}</text>')
    for s, queued, started, finished, worker, lane in placed:
        top = offsets[worker] + lane * LANE_H
        queue_x, run_x = LABEL_W + (queued - start) * scale, LABEL_W + (started - start) * scale
        run_w = max(1.0, (finished - started) * scale)
        fill, stroke = _fill(s.status.value)
        sid = html.escape(s.id)
        startup_w = s.startup_ms / 1000 * scale
        booting = f"its worker starting {s.startup_ms:.0f} ms, " if s.startup_ms else ""
        tip = (
            f"{sid}: {booting}queued {s.queue_ms:.0f} ms, ran {s.run_ms:.0f} ms "
            f"on {html.escape(worker)}"
        )
        label = f'<text x="{run_x + 3:.1f}" y="{top + 11}" class="label">{sid}</text>'
        startup = (
            f'<rect class="startup" x="{queue_x:.1f}" y="{top}" width="{startup_w:.1f}" '
            f'height="{LANE_H - 3}"/>'
            if s.startup_ms
            else ""
        )
        out.append(
            f'<g class="bar" data-step="{sid}"><title>{tip}</title>{startup}'
            f'<rect class="queue" x="{queue_x + startup_w:.1f}" y="{top}" '
            f'width="{max(0.0, run_x - queue_x - startup_w):.1f}" height="{LANE_H - 3}"/>'
            f'<rect x="{run_x:.1f}" y="{top}" width="{run_w:.1f}" height="{LANE_H - 3}" '
            f'fill="{fill}" stroke="{stroke}"/>{label if run_w > 40 else ""}</g>'
        )
    out.append("</svg>")
    return "".join(out)


def _trust(s: StepRecord) -> str:
    """The step's confidence and whether it was accepted, for a node's tooltip."""
    if s.accepted is None and s.confidence is None:
        return ""
    sure = "" if s.confidence is None else f", confidence {s.confidence:.2f}"
    return f"{sure}, {'accepted' if s.accepted else 'flagged for review'}"


def _details(record: RunRecord) -> str:
    data = {
        s.id: {
            "kind": s.kind,
            "status": s.status.value,
            "worker": s.worker,
            "model": s.model,
            "attempts": s.attempts,
            "startup_ms": round(s.startup_ms, 1),
            "queue_ms": round(s.queue_ms, 1),
            "run_ms": round(s.run_ms, 1),
            "tokens": {"prompt": s.prompt_tokens, "completion": s.completion_tokens},
            "cost_usd": s.cost_usd,
            "confidence": s.confidence,
            "accepted": s.accepted,
            "fields": {
                name: {k: f.get(k) for k in ("value", "confidence", "accepted")}
                for name, f in (s.meta.get("fields") or {}).items()
                if isinstance(f, dict)
            }
            or None,
            "inputs": _short(s.inputs),
            "output": _short(s.value),
            "error": s.error.model_dump() if s.error else None,
        }
        for s in record.steps
    }
    return json.dumps(data, ensure_ascii=False, default=str).replace("</", "<\\/")


STYLE = """
body{font:14px system-ui,sans-serif;margin:20px;color:#18181b}
h1{font-size:18px}h2{font-size:15px;margin-top:24px}
.edge{fill:none;stroke:#a1a1aa;stroke-width:1.5}
.node text.id{font-weight:600;font-size:12px}.node text.kind{font-size:11px;fill:#52525b}
.node text.flag{font-size:12px;fill:#b45309}
.node,.bar{cursor:pointer}.queue{fill:#e4e4e7}.startup{fill:#fcd34d}
.axis,.worker{font-size:11px;fill:#52525b}.label{font-size:10px;pointer-events:none}
#detail{position:fixed;right:16px;top:16px;width:380px;max-height:80vh;overflow:auto;
background:#fafafa;border:1px solid #d4d4d8;border-radius:6px;padding:8px;font-size:12px;
white-space:pre-wrap}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:4px}
#graph-view{border:1px solid #e4e4e7;border-radius:6px;margin-right:400px;overflow:hidden}
#graph{display:block;touch-action:none;user-select:none;cursor:grab}
.tools{font-size:12px;color:#52525b}.tools button{margin-left:4px;min-width:28px}
"""

SCRIPT = """
const graph = document.getElementById('graph');
const full = {x: 0, y: 0, w: +graph.dataset.width, h: +graph.dataset.height};
let box = {...full};
const show = () => graph.setAttribute('viewBox', `${box.x} ${box.y} ${box.w} ${box.h}`);
const at = e => {  // a pointer's position in the graph's own units
  const p = graph.createSVGPoint();
  p.x = e.clientX; p.y = e.clientY;
  return p.matrixTransform(graph.getScreenCTM().inverse());
};
const zoom = (k, p) => {
  const w = Math.min(full.w * 4, Math.max(80, box.w * k)), f = w / box.w;
  box = {x: p.x - (p.x - box.x) * f, y: p.y - (p.y - box.y) * f, w: w, h: box.h * f};
  show();
};
graph.addEventListener('wheel', e => {
  e.preventDefault();
  zoom(e.deltaY > 0 ? 1.25 : 0.8, at(e));
}, {passive: false});
let grab = null;
graph.addEventListener('pointerdown', e => { grab = at(e); graph.setPointerCapture(e.pointerId); });
graph.addEventListener('pointermove', e => {
  if (!grab) return;
  const p = at(e);
  box.x -= p.x - grab.x; box.y -= p.y - grab.y;
  show();
});
graph.addEventListener('pointerup', () => { grab = null; });
const centre = () => ({x: box.x + box.w / 2, y: box.y + box.h / 2});
document.getElementById('zoom-in').onclick = () => zoom(0.8, centre());
document.getElementById('zoom-out').onclick = () => zoom(1.25, centre());
document.getElementById('zoom-fit').onclick = () => { box = {...full}; show(); };
const steps = JSON.parse(document.getElementById('steps').textContent);
const detail = document.getElementById('detail');
document.querySelectorAll('[data-step]').forEach(el => {
  el.addEventListener('mouseenter', () => {
    const id = el.getAttribute('data-step');
    detail.textContent = id + '\\n' + JSON.stringify(steps[id], null, 2);
  });
});
"""


def render_html(record: RunRecord) -> str:
    """The whole page for a run record, with no external resources."""
    t = record.totals
    legend = "".join(
        f'<span style="background:{_fill(st)[0]};border:1px solid {_fill(st)[1]}">{st}</span>'
        for st in STATUS_STYLES
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>taskloom run {html.escape(record.run_id)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>run {html.escape(record.run_id)}: {record.status.value}</h1>"
        f"<p>{html.escape(record.target or 'workflow')} · {t.done}/{t.steps} steps done · "
        f"{t.prompt_tokens + t.completion_tokens} tokens · ${t.cost_usd:.6f}"
        f"{f' · ⚑ {t.flagged} values need review' if t.flagged else ''}</p>"
        f'<p class="legend">{legend}</p>'
        "<h2>Plan</h2>"
        '<p class="tools">drag to pan, wheel to zoom <button id="zoom-in">+</button>'
        '<button id="zoom-out">−</button><button id="zoom-fit">fit</button></p>'
        f'<div id="graph-view">{_graph(record.steps)}</div>'
        "<h2>Timeline (amber: its worker starting and loading the model; grey: waiting "
        "in the queue; colour: running)</h2>"
        f"{_timeline(record.steps)}"
        '<pre id="detail">hover a step to see its inputs, output, tokens and cost</pre>'
        f'<script type="application/json" id="steps">{_details(record)}</script>'
        f"<script>{SCRIPT}</script></body></html>"
    )
