"""The review page's server: a small local web page over the same API as the CLI.

Bound to 127.0.0.1 by default. With `TASKLOOM_SECRET` set, every request must carry it
as `token` (the page's URL `/?token=...`; the forms carry it on).
"""

from __future__ import annotations

import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from taskloom.api.remote import connect_redis
from taskloom.config import Settings, reveal, settings_for
from taskloom.errors import InputError, TaskloomError
from taskloom.logs import get_logger
from taskloom.views.review_page import render_review_page
from taskloom.workflows.review import ReviewDesk

log = get_logger(__name__)


class ReviewServer(ThreadingHTTPServer):
    """Serves the review page of one Redis's pending reviews."""

    daemon_threads = True

    def __init__(self, desk: ReviewDesk, *, host: str, port: int, token: str | None) -> None:
        self.desk, self.token = desk, token
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{host!s}:{port}{query}"


def review_server(
    *, port: int = 0, host: str = "127.0.0.1", settings: Settings | None = None, **options: Any
) -> ReviewServer:
    """A review page server, bound and ready (`serve_forever` to serve; port 0: any free)."""
    settings = settings_for(settings, options)
    desk = ReviewDesk(connect_redis(settings), settings=settings)
    return ReviewServer(desk, host=host, port=port, token=reveal(settings.secret))


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/":
            self._send(404, "not found")
        elif self._allowed(parse_qs(url.query)):
            self._page()

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(size).decode())
        if urlparse(self.path).path != "/decide":
            self._send(404, "not found")
        elif self._allowed(form):
            try:
                self._decide({k: v[0] for k, v in form.items()})
            except TaskloomError as e:
                self._page(str(e), status=400)
                return
            self.send_response(303)
            self.send_header("Location", self.server.url)
            self.end_headers()

    def _decide(self, form: dict[str, str]) -> None:
        desk, run_id, step = self.server.desk, form.get("run_id", ""), form.get("step", "")
        if form.get("action") == "reject":
            desk.reject(run_id, step, reason=form.get("reason", ""), by="review page")
            return
        entry = desk.entry(run_id, step) or {}
        try:
            value = json.loads(form.get("value", "null"))
        except json.JSONDecodeError as e:
            raise InputError(f"run {run_id} step {step}: the edited value is not JSON: {e}") from e
        edit = {} if value == entry.get("value") else {"value": value}
        desk.approve(run_id, step, by="review page", **edit)

    def _allowed(self, query: dict[str, list[str]]) -> bool:
        token = self.server.token
        given = (query.get("token") or [""])[0]
        if token is None or hmac.compare_digest(given.encode(), token.encode()):
            return True
        self._send(403, "a token is required: open the URL taskloom review --serve printed")
        return False

    def _page(self, message: str = "", *, status: int = 200) -> None:
        pending = self.server.desk.pending()
        html = render_review_page(pending, token=self.server.token, message=message)
        self._send(status, html, kind="text/html")

    def _send(self, status: int, text: str, *, kind: str = "text/plain") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review_page_request", line=format % args)
