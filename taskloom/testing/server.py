"""A scripted OpenAI-compatible HTTP server: the shipped fake endpoint for tests and benchmarks.

It is a real server on a real port, so the real `openai` client talks to it over
HTTP, streaming (SSE) included. It replays scripted replies in order, or computes
them with a function, and can be told to answer 429 or 500, to stall past the
client's timeout, to reject `json_schema` response formats (as llama.cpp's server
does), and to stream at a fixed token rate after a fixed first-token latency.

```python
with ScriptedServer([Reply(text='{"version": 1, ...}'), Reply(status=429)]) as server:
    model = OpenAIChatModel(base_url=server.url, model="gpt-4o-mini")
```
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from taskloom.logs import get_logger

log = get_logger(__name__)


@dataclass
class Reply:
    """One scripted response.

    Args:
        text: the assistant's message (a dict or list is sent as JSON).
        status: an HTTP status; anything but 200 is sent as an OpenAI error body, with
            `text` as its message when given.
        latency_s: wait before answering (before the first chunk when streaming);
            `None` uses the server's default.
        tokens_per_s: streaming rate; `None` uses the server's default (0: all at once).
        stall_s: hang this long before answering at all (to trip client timeouts).
        logprobs: per-token `(token, logprob, [(alt, logprob), ...])` to report.
        retry_after_s: with an error status, send this `Retry-After` header.
    """

    text: str | dict[str, Any] | list[Any] = ""
    status: int = 200
    latency_s: float | None = None
    tokens_per_s: float | None = None
    stall_s: float = 0.0
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None
    retry_after_s: float | None = None

    @property
    def content(self) -> str:
        """The message text as sent."""
        return self.text if isinstance(self.text, str) else json.dumps(self.text)


Responder = Callable[[dict[str, Any]], Reply]


def tokens_of(text: str, *, chars: int = 4) -> list[str]:
    """Split text into pseudo-tokens of about `chars` characters (for streaming)."""
    return [text[i : i + chars] for i in range(0, len(text), chars)] or [""]


_WORD_PIECE = re.compile(r"\s?[A-Za-z]{1,8}|\s?\d{1,3}|\s?[^\w\s]{1,2}|\s+|.", re.DOTALL)


def word_tokens(text: str) -> list[str]:
    """Split text roughly as a BPE tokenizer does: words (with their leading space, up to
    8 letters a piece), numbers up to 3 digits, punctuation in runs of up to 2.

    On English prose this gives about 4 characters a token, and a token never ends
    inside a word, as a real model's tokens don't (`tokens_of` cuts every 4 characters).
    """
    return _WORD_PIECE.findall(text) or [""]


@dataclass
class ScriptedServer:
    """Serve scripted chat completions on 127.0.0.1, on a free port.

    Args:
        replies: replies given in order, one per request.
        respond: computes a reply from the request body once `replies` is used up.
        latency_s: default wait before answering.
        tokens_per_s: default streaming rate (0: every chunk at once).
        tokenize: how a reply is cut into streamed tokens (`tokens_of`, `word_tokens`).
        rejects_json_schema: answer 400 to `response_format: json_schema`.
        served_model: the model name every reply gives, whatever the request asked for
            (as a local server that serves its own model does); None echoes the request's.
    """

    replies: Sequence[Reply] = ()
    respond: Responder | None = None
    latency_s: float = 0.0
    tokens_per_s: float = 0.0
    tokenize: Callable[[str], list[str]] = tokens_of
    rejects_json_schema: bool = False
    served_model: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    arrived_s: list[float] = field(default_factory=list)
    """`time.monotonic()` when each scripted reply's request arrived."""
    _queue: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._queue = list(self.replies)

    @property
    def url(self) -> str:
        """The base URL the `openai` client takes (`.../v1`)."""
        assert self._http is not None, "start() the server first"
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        """Script more replies."""
        with self._lock:
            self._queue.extend(replies)

    def next_reply(self, body: dict[str, Any]) -> Reply:
        """The reply for this request (and record the request)."""
        with self._lock:
            self.requests.append(body)
            self.arrived_s.append(time.monotonic())
            if self._queue:
                return self._queue.pop(0)
        if self.respond is not None:
            return self.respond(body)
        return Reply(text="ok")

    def start(self) -> ScriptedServer:
        """Start serving on a free port, in a background thread."""
        server = self

        class Handler(_Handler):
            scripted = server

        self._http = _QuietServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        log.debug("scripted_server_started", url=self.url)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what the timeout tests want.
        return


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read stderr
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._error(400, "request body is not JSON")
            return
        if not self.path.endswith("/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        server = self.scripted
        fmt = (body.get("response_format") or {}).get("type")
        if server.rejects_json_schema and fmt == "json_schema":
            with server._lock:
                server.requests.append(body)
            self._error(400, "response_format json_schema is not supported")
            return
        reply = server.next_reply(body)
        if server.served_model:
            body = {**body, "model": server.served_model}
        if reply.stall_s:
            time.sleep(reply.stall_s)
        if reply.status != 200:
            message = reply.content or f"scripted status {reply.status}"
            self._error(reply.status, message, reply.retry_after_s)
            return
        latency_s = server.latency_s if reply.latency_s is None else reply.latency_s
        rate = server.tokens_per_s if reply.tokens_per_s is None else reply.tokens_per_s
        if body.get("stream"):
            self._stream(body, reply, latency_s, rate)
        else:
            time.sleep(latency_s + (len(server.tokenize(reply.content)) / rate if rate else 0.0))
            self._json(200, _completion(body, reply))

    def _stream(self, body: dict[str, Any], reply: Reply, latency_s: float, rate: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        time.sleep(latency_s)
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        pieces = self.scripted.tokenize(reply.content)
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            self._event(_chunk(cid, body, [{"index": 0, "delta": delta, "finish_reason": None}]))
            if rate:
                time.sleep(1.0 / rate)
        self._event(_chunk(cid, body, [{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = _usage(body, reply)
            self._event({**_chunk(cid, body, []), "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _json(
        self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        kind = "rate_limit_error" if status == 429 else "server_error"
        headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
        body = {"error": {"message": message, "type": kind, "code": status}}
        self._json(status, body, headers)


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = max(1, sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", [])))
    completion = len(tokens_of(reply.content))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunk(cid: str, body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": choices,
    }


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.content},
        "finish_reason": "stop",
    }
    if reply.logprobs is not None and body.get("logprobs"):
        choice["logprobs"] = {
            "content": [
                {
                    "token": tok,
                    "logprob": lp,
                    "bytes": None,
                    "top_logprobs": [
                        {"token": a, "logprob": alp, "bytes": None} for a, alp in alts
                    ],
                }
                for tok, lp, alts in reply.logprobs
            ]
        }
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [choice],
        "usage": _usage(body, reply),
    }
