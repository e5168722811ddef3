"""`OpenAIChatModel`: the ChatModel Protocol over any OpenAI-compatible endpoint.

Works against OpenAI, vLLM, Ollama and llama.cpp's server through the `openai` SDK.
Structured output degrades step by step, remembered per instance, because servers
differ in what they accept:

1. `response_format: json_schema` (OpenAI, vLLM, Ollama);
2. `response_format: json_object` with a `schema` (llama-cpp-python's server, which
   rejects `json_schema` but turns this schema into a grammar);
3. plain text, with the JSON parsed out of it (`extract_json`).

Transient failures (408, 409, 429, 5xx, timeouts, refused connections) are retried by
the SDK itself (`max_retries` = `Settings.planner_retries`, exponential backoff with
jitter, honouring `Retry-After`; `timeout` = `Settings.planner_timeout_s` per request),
then raise `EndpointUnavailableError` naming the endpoint (exit 3).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import openai

from taskloom import tracing
from taskloom.chat.base import Completion, Message
from taskloom.config import Settings, reveal
from taskloom.errors import ConfigError, EndpointUnavailableError
from taskloom.logs import get_logger

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = get_logger(__name__)

_MODES = ("json_schema", "json_object", "text")


def extract_json(text: str) -> str:
    """The first whole JSON object or array in `text` (fences and chatter stripped).

    Returns the text unchanged when none is found, so the caller's parse error is
    about what the model really said.
    """
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                _, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            return text[i:end]
    return text.strip()


@dataclass
class StreamedCompletion:
    """A streamed reply: iterate `chunks` for text deltas; `completion` once exhausted."""

    chunks: Iterator[str]
    completion: Completion | None = None


class OpenAIChatModel:
    """A chat model behind an OpenAI-compatible endpoint.

    Args:
        base_url: the endpoint, e.g. `http://127.0.0.1:8080/v1`.
        api_key: the key (local servers accept any).
        model: the model name to ask for.
        settings: the timeout, the retries and the prices.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.base_url = base_url
        self._model = model
        self._mode = 0  # index into _MODES: how structured output is asked for
        self._is_accepted = False  # the endpoint has answered a request in that mode
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=self.settings.planner_timeout_s,
            max_retries=self.settings.planner_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChatModel | None:
        """The model `settings` configure, or None when no endpoint is set."""
        if not settings.openai_base_url:
            return None
        return cls(
            base_url=settings.openai_base_url,
            api_key=reveal(settings.openai_api_key),
            model=settings.planner_model,
            settings=settings,
        )

    is_llm = True
    """Priced as the large model (`Settings.cost_usd(..., is_llm=True)`)."""

    @property
    def name(self) -> str:
        return self._model

    # -- calls ----------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion:
        """Complete the chat; with `schema`, the text is the JSON found in the reply."""
        started = time.perf_counter()
        with self._span(max_tokens=max_tokens, temperature=temperature) as span:
            response = self._create(messages, schema, max_tokens, temperature, stream=False)
            text = response.choices[0].message.content or "" if response.choices else ""
            if schema is not None:
                text = extract_json(text)
            usage = response.usage
            done = Completion(
                text=text,
                model=self._model,
                prompt_tokens=usage.prompt_tokens if usage else _estimate(messages),
                completion_tokens=usage.completion_tokens if usage else _estimate_text(text),
                run_ms=(time.perf_counter() - started) * 1000,
            )
            answered_by = response.model or self._model
            tracing.model_usage(
                span, model=answered_by, inputs=done.prompt_tokens, outputs=done.completion_tokens
            )
        return done

    def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 2048,
        temperature: float = 0.0,
    ) -> StreamedCompletion:
        """Stream the reply as text deltas. Connection failures are retried before the
        first chunk; `completion` holds the accounting once `chunks` is exhausted."""
        started = time.perf_counter()
        response = self._create(messages, schema, max_tokens, temperature, stream=True)
        out = StreamedCompletion(chunks=iter(()))

        def chunks() -> Iterator[str]:
            parts: list[str] = []
            prompt_tokens = completion_tokens = 0
            try:
                for chunk in response:
                    if chunk.usage is not None:
                        prompt_tokens = chunk.usage.prompt_tokens
                        completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if delta := choice.delta.content:
                            parts.append(delta)
                            yield delta
            except (openai.APIConnectionError, openai.APIStatusError) as e:
                raise self._unavailable(e, attempts=1) from e
            text = "".join(parts)
            out.completion = Completion(
                text=text,
                model=self._model,
                prompt_tokens=prompt_tokens or _estimate(messages),
                completion_tokens=completion_tokens or _estimate_text(text),
                run_ms=(time.perf_counter() - started) * 1000,
            )
            log.debug("llm_stream_finished", model=self._model, chars=len(text))

        out.chunks = chunks()
        return out

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        """Log-probabilities of each continuation (see `score_usage`)."""
        return self.score_usage(messages, continuations)[0]

    def score_usage(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> tuple[list[float], Completion]:
        """Log-probabilities of each continuation, from the endpoint's top logprobs.

        Chat endpoints can't score arbitrary text, so this reads the reply's token
        logprobs: a continuation matching the reply gets the reply's log-probability;
        one that diverges gets the alternative's logprob where it diverges. Without
        logprobs, the continuation the model wrote gets 0.9 of the mass.
        """
        started = time.perf_counter()
        request: dict[str, Any] = {
            "model": self._model,
            "messages": list(messages),
            "max_tokens": 32,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": 5,
        }
        with self._span(max_tokens=32, temperature=0.0) as span:
            scores, spent = self._score(request, messages, continuations, started)
            tracing.model_usage(
                span, model=self._model, inputs=spent.prompt_tokens, outputs=spent.completion_tokens
            )
        return scores, spent

    def _span(self, **request: Any) -> AbstractContextManager[Span | None]:
        """The GenAI span of one call to the endpoint (kind CLIENT)."""
        url = urlsplit(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        server = (url.hostname or self.base_url, port)
        return tracing.model_call(self._model, provider="openai", server=server, **request)

    def _score(
        self,
        request: dict[str, Any],
        messages: Sequence[Message],
        continuations: Sequence[str],
        started: float,
    ) -> tuple[list[float], Completion]:
        try:
            response = self._call(request)
        except openai.APIStatusError as e:  # no logprobs here: score what the model writes
            log.info("llm_logprobs_unsupported", model=self._model, error=_why(e))
            del request["logprobs"], request["top_logprobs"]
            try:
                response = self._call(request)
            except openai.APIStatusError as again:
                raise ConfigError(
                    f"{self.base_url} rejected the request: {_why(again)}; check the model name"
                ) from again
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "") if choice else ""
        usage = response.usage
        spent = Completion(
            text="",  # not an answer: keeps it out of a kind's raw outputs
            model=self._model,
            prompt_tokens=usage.prompt_tokens if usage else _estimate(messages),
            completion_tokens=usage.completion_tokens if usage else _estimate_text(text),
            run_ms=(time.perf_counter() - started) * 1000,
        )
        tokens = choice.logprobs.content if choice and choice.logprobs else None
        if not tokens:
            return _fallback_scores(text, continuations), spent
        return [_score_one(c, tokens) for c in continuations], spent

    # -- plumbing -------------------------------------------------------------------

    def _create(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        *,
        stream: bool,
    ) -> Any:
        while True:
            extra: dict[str, Any] = {}
            mode = _MODES[self._mode] if schema is not None else "text"
            if mode == "json_schema":
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": False},
                }
            elif mode == "json_object":
                extra["response_format"] = {"type": "json_object", "schema": schema}
            if stream:
                extra["stream"] = True
                extra["stream_options"] = {"include_usage": True}
            request: dict[str, Any] = {
                "model": self._model,
                "messages": list(messages),
                "max_tokens": max_tokens,
                "temperature": temperature,
                **extra,
            }
            try:
                response = self._call(request, is_probe=mode != "text" and not self._is_accepted)
            except openai.APIStatusError as e:
                if not _rejects_request(e):
                    raise
                if mode == "text" or schema is None:
                    raise ConfigError(
                        f"{self.base_url} rejected the request: {_why(e)}; check the model name"
                    ) from e
                self._mode += 1
                log.info("llm_structured_output_degraded", model=self._model, to=_MODES[self._mode])
                continue
            if mode != "text":
                self._is_accepted = True
            return response

    def _call(self, request: dict[str, Any], *, is_probe: bool = False) -> Any:
        """One request through the SDK, which retries 408, 409, 429, 5xx, timeouts and
        refused connections itself (`max_retries`, honouring `Retry-After`, with jitter).
        Its errors become taskloom's: a refusal is a ConfigError (exit 2), a failure that
        outlasts the retries an EndpointUnavailableError (exit 3).

        A probe (a `response_format` this endpoint has not yet accepted) is sent once,
        without retries: llama.cpp's server rejects an unknown one with HTTP 500, which
        the SDK would retry. A probe that fails transiently is sent again with the
        retries left, so a request is still tried `planner_retries + 1` times in all.
        """
        retries = self.settings.planner_retries
        try:
            return self._send(request, max_retries=0 if is_probe else retries)
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            if not is_probe or not _is_retryable(e) or retries == 0:
                self._raise(e, attempts=1 if is_probe else retries + 1)
        try:
            return self._send(request, max_retries=retries - 1)
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            self._raise(e, attempts=retries + 1)

    def _raise(self, e: Exception, *, attempts: int) -> NoReturn:
        mapped = self._mapped(e, attempts=attempts)
        if mapped is e:
            raise e
        raise mapped from e

    def _send(self, request: dict[str, Any], *, max_retries: int) -> Any:
        client = self._client
        if max_retries != self.settings.planner_retries:
            client = client.with_options(max_retries=max_retries)
        return client.chat.completions.create(**request)

    def _mapped(self, e: Exception, *, attempts: int) -> Exception:
        """The taskloom error for an SDK error; a rejected request stays as it is, for
        the caller to ask differently (a simpler `response_format`)."""
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            return ConfigError(
                f"{self.base_url} refused the API key ({_why(e)}); set OPENAI_API_KEY"
            )
        if isinstance(e, openai.NotFoundError):
            return ConfigError(
                f"{self.base_url} has no model {self._model!r} ({_why(e)}); "
                "set TASKLOOM_PLANNER_MODEL or pass --planner-model"
            )
        if isinstance(e, openai.APIStatusError):
            if _rejects_request(e):
                return e
            if not _is_transient(e):
                return ConfigError(
                    f"{self.base_url} refused the request ({_why(e)}: {e.message}); "
                    "check OPENAI_BASE_URL and the model"
                )
        return self._unavailable(e, attempts=attempts)

    def _unavailable(self, e: Exception, *, attempts: int) -> EndpointUnavailableError:
        return EndpointUnavailableError(
            f"LLM endpoint {self.base_url} failed after {attempts} attempt(s): {_why(e)}; "
            "check that it is up, or set OPENAI_BASE_URL"
        )


def _rejects_request(e: openai.APIStatusError) -> bool:
    """The server refused the request itself: retrying the same one can't help.

    llama-cpp-python's server answers a `response_format` it doesn't know with HTTP 500
    and its validation error, not 400, so that case is recognised by its text.
    """
    if e.status_code in (400, 422):
        return True
    return e.status_code == 500 and "response_format" in str(e)


def _is_transient(e: openai.APIStatusError) -> bool:
    return e.status_code in (408, 409, 429) or e.status_code >= 500


def _is_retryable(e: Exception) -> bool:
    """What the SDK would have retried: a refused connection, a timeout, a transient
    status that is not a rejection of the request."""
    if isinstance(e, openai.APIStatusError):
        return _is_transient(e) and not _rejects_request(e)
    return isinstance(e, openai.APIConnectionError)


def _why(e: Exception) -> str:
    if isinstance(e, openai.APITimeoutError):
        return "timed out"
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code}"
    if isinstance(e, openai.APIConnectionError):
        return "connection failed"
    return type(e).__name__


def _estimate(messages: Sequence[Message]) -> int:
    return sum(_estimate_text(m["content"]) for m in messages)


def _estimate_text(text: str) -> int:
    return max(1, len(text) // 4)  # about four characters a token in English


def _fallback_scores(text: str, continuations: Sequence[str]) -> list[float]:
    said = "".join(text.split())
    hits = [bool(c.strip()) and "".join(c.split()) == said for c in continuations]
    if not any(hits):
        return [math.log(1 / len(continuations))] * len(continuations)
    rest = max(1, len(continuations) - 1)
    return [math.log(0.9) if hit else math.log(0.1 / rest) for hit in hits]


_FLOOR_LOGPROB = -20.0


def _score_one(continuation: str, tokens: Sequence[Any]) -> float:
    """Walk the reply's tokens along the continuation (whitespace-insensitive)."""
    want = "".join(continuation.split())
    total = 0.0
    for tok in tokens:
        piece = "".join(tok.token.split())
        if not want:
            return total
        if piece and want.startswith(piece):
            total += tok.logprob
            want = want[len(piece) :]
            continue
        if not piece:
            total += tok.logprob
            continue
        alts = [
            a.logprob
            for a in tok.top_logprobs or []
            if "".join(a.token.split()) and want.startswith("".join(a.token.split()))
        ]
        return total + (max(alts) if alts else _FLOOR_LOGPROB)
    return total
