"""The review page as HTML: each pending review with its input text, the proposed
value (flagged fields highlighted), and approve / edit / reject (`taskloom review --serve`)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body { font: 15px system-ui, sans-serif; margin: 2rem; max-width: 60rem; }
.review { border: 1px solid #ccc; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
.why { color: #555; } .input { white-space: pre-wrap; background: #f6f6f6; padding: .5rem; }
.flagged { background: #fff0b3; } textarea { width: 100%; font: 13px monospace; }
.message { padding: .5rem; background: #fde2e2; }
"""


def _fields(review: dict[str, Any]) -> str:
    fields = review.get("fields")
    if not isinstance(fields, dict) or not fields:
        return ""
    items = []
    for name, f in fields.items():
        f = f if isinstance(f, dict) else {}
        cls = ' class="flagged"' if f.get("accepted") is False else ""
        value = escape(json.dumps(f.get("value"), ensure_ascii=False))
        items.append(f"<li{cls}>{escape(name)}: {value} ({f.get('confidence')})</li>")
    return "<ul class='fields'>" + "".join(items) + "</ul>"


def _text(review: dict[str, Any]) -> str:
    inputs = review.get("inputs") or {}
    shown = {k: v for k, v in inputs.items() if k != "examples"}
    text = shown.get("text")
    return str(text) if isinstance(text, str) else json.dumps(shown, indent=2, ensure_ascii=False)


def _form(review: dict[str, Any], token: str | None) -> str:
    run_id, step = escape(str(review["run_id"])), escape(str(review["step"]))
    value = escape(json.dumps(review.get("value"), indent=2, ensure_ascii=False))
    hidden = f'<input type="hidden" name="token" value="{escape(token)}">' if token else ""
    return f"""
<form class="review" method="post" action="/decide" data-run="{run_id}" data-step="{step}">
  <h2>{run_id} · {step} <small>({escape(str(review.get("kind")))})</small></h2>
  <p class="why">{escape(str(review.get("why", "")))}</p>
  <div class="input">{escape(_text(review))}</div>
  {_fields(review)}
  <input type="hidden" name="run_id" value="{run_id}">
  <input type="hidden" name="step" value="{step}">{hidden}
  <textarea name="value" rows="6">{value}</textarea>
  <p><button name="action" value="approve">Approve</button>
     <input name="reason" placeholder="reason to reject">
     <button name="action" value="reject">Reject</button></p>
</form>"""


def render_review_page(
    reviews: list[dict[str, Any]], *, token: str | None = None, message: str = ""
) -> str:
    """The whole page; `token` goes into every form when the server requires one."""
    body = "".join(_form(r, token) for r in reviews) or "<p id='none'>No pending reviews.</p>"
    note = f"<p class='message' id='message'>{escape(message)}</p>" if message else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>taskloom reviews</title>"
        f"<style>{STYLE}</style></head><body><h1>Pending reviews</h1>{note}{body}</body></html>"
    )
