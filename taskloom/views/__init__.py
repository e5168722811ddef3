"""Pictures of plans and runs: Mermaid text, and a self-contained HTML page."""

from taskloom.views.html import render_html
from taskloom.views.mermaid import plan_mermaid, run_mermaid

__all__ = ["plan_mermaid", "render_html", "run_mermaid"]
