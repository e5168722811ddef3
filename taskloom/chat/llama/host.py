"""The model host: one GGUF model, loaded once per process, behind the ChatModel Protocol.

`ModelHost` owns a llama.cpp model and context. With `concurrency=1` calls are
serialised with a lock, because a llama.cpp context is not thread-safe. With
`concurrency=N > 1`, calls from up to N threads decode together in one batch (see
`batch.py`): one `llama_decode` per token for all of them. Each call reports prompt
tokens, prompt tokens actually evaluated (fewer when a cached prefix was reused),
completion tokens and wall time.

Calls honour the calling thread's step deadline (`taskloom.deadline`) and, in a batch,
its cancel event (`taskloom.chat.cancel`): past either, that call fails alone.

A prompt that does not fit the context window fails with `TaskInputError`; it is never
truncated, because silently dropping the end of a text would drop the fields a step
asks for. Shorten the text, or raise `n_ctx` (`Settings.n_ctx`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaContext, LlamaModel
from llama_cpp._logger import set_verbose
from llama_cpp._utils import suppress_stdout_stderr
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from taskloom import deadline, tracing
from taskloom.chat import cancel
from taskloom.chat.base import Completion, Message, TokenLogprob
from taskloom.chat.grounding import GROUNDING_KEYWORD, Grounding
from taskloom.chat.llama import placement
from taskloom.chat.llama.adapters import AdaptedModel, Adapter, Adapters
from taskloom.chat.llama.batch import CHUNK, Batch, Request
from taskloom.chat.llama.decoder import N_BRANCHES, N_SLOTS, Decoder
from taskloom.chat.llama.grammar import GrammarCache
from taskloom.chat.llama.picker import Draft, Generated, json_done
from taskloom.chat.llama.placement import rss_mb
from taskloom.chat.llama.speculate import MAX_DRAFT, Templates, allowance, lookup_limit
from taskloom.chat.model_file import check_model_file
from taskloom.errors import ModelFileError, TaskInputError
from taskloom.logs import get_logger

PROVIDER = "llama.cpp"
"""`gen_ai.provider.name` of the resident model's spans."""
log = get_logger(__name__)

N_BATCH = 512
NO_REPEAT_NGRAM = 8
"""Greedy decoding of a small model loops; no run of this many tokens is generated twice."""


class ModelHost:
    """A resident GGUF model that completes chats, constrained to JSON schemas.

    Args:
        path: the GGUF file.
        n_ctx: the context window, in tokens.
        n_threads: CPU threads for generation (default: half the logical cores, as in
            llama-cpp-python, since decoding one token at a time is memory-bound and
            spinning threads suffer most when cores are shared; with `concurrency > 1`,
            every core, since a batch of tokens is compute-bound). Prompt evaluation
            always uses every core.
        concurrency: calls decoded together (1: one at a time, as a plain lock, with the
            weights unpacked so that drafts decode bit for bit as single tokens do,
            `speculate.MAX_DRAFT`). The KV cache holds `concurrency` sequences of `n_ctx`.
        chunk: with `concurrency > 1`, prompt tokens evaluated per step while other
            calls are generating.
        n_gpu_layers: layers offloaded to the GPU (-1: all; 0: CPU only).
        gpu: the GPU to run on (sets `main_gpu` and keeps the model on that one device);
            with `n_gpu_layers` left at None, every layer is offloaded to it.
        main_gpu: the device for the model's main work when splitting across GPUs.
        name: the model name recorded in results (default: the file name).
        speculate: draft tokens from the prompt and the schema and verify them in the
            decode of the next token (`speculate.py`); greedy outputs are unchanged.

    Raises:
        ModelFileError: the file is missing, unreadable or not a valid GGUF model.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        gpu: int | None = None,
        main_gpu: int = 0,
        name: str | None = None,
        concurrency: int = 1,
        chunk: int = CHUNK,
        speculate: bool = True,
    ) -> None:
        self.path = Path(path).expanduser()
        check_model_file(self.path)
        self._name = name or self.path.stem
        self._lock = threading.Lock()
        started = time.perf_counter()
        # llama.cpp logs every context detail to stderr; keep only its errors.
        set_verbose(False)
        llama_cpp.llama_backend_init()
        mparams = placement.model_params(
            n_gpu_layers=n_gpu_layers, gpu=gpu, main_gpu=main_gpu, repack=concurrency > 1
        )
        listening = placement.listen()
        load_log = listening.__enter__()  # until the context exists: its buffers count too
        try:
            self._model = LlamaModel(path_model=str(self.path), params=mparams, verbose=False)
        except ValueError as e:
            listening.__exit__(None, None, None)
            raise ModelFileError(f"model file {self.path} could not be loaded: {e}") from e
        cores = os.cpu_count() or 1
        self.concurrency = max(1, concurrency)
        is_batched = self.concurrency > 1
        threads = n_threads or (cores if is_batched else max(cores // 2, 1))
        cparams = llama_cpp.llama_context_default_params()
        # Sequential: the slots, and room for a review's branches scored in one decode.
        cparams.n_ctx = n_ctx * self.concurrency if is_batched else n_ctx * N_SLOTS + N_BATCH
        cparams.n_seq_max = self.concurrency if is_batched else N_SLOTS + N_BRANCHES
        cparams.kv_unified = True  # one cache: a shared prefix is stored once (seq_cp)
        cparams.n_batch = cparams.n_ubatch = N_BATCH
        cparams.n_threads = threads
        cparams.n_threads_batch = max(cores, threads)
        cparams.swa_full = True  # a full window: a call can roll back to any shared prefix
        try:
            with suppress_stdout_stderr(disable=False):
                self._ctx = LlamaContext(model=self._model, params=cparams, verbose=False)
        finally:
            listening.__exit__(None, None, None)
        slots = None if is_batched else N_SLOTS
        self._decoder = Decoder(
            self._model.model, self._ctx.ctx, n_batch=N_BATCH, slots=slots, n_ctx=n_ctx
        )
        self._grammars = GrammarCache(self._model.vocab)
        self._adapters = Adapters(self._model.model)
        self._grammar_lock = threading.Lock()
        self._batch = (
            Batch(
                self._ctx.ctx,
                self._decoder.picker,
                n_vocab=self._decoder.n_vocab,
                n_seq=self.concurrency,
                n_ctx=n_ctx,
                n_batch=N_BATCH,
                chunk=chunk,
                draft_allowance=allowance(on_gpu=mparams.n_gpu_layers != 0) if speculate else 0,
            )
            if is_batched
            else None
        )
        self._max_draft = MAX_DRAFT if speculate else 0
        self._templates = Templates(
            lambda text: self._decoder.tokenize(text, special=False),
            lookup_limit(on_gpu=mparams.n_gpu_layers != 0),
        )
        self._formatter = self._chat_formatter()
        self.load_s = time.perf_counter() - started
        self.model_bytes = int(llama_cpp.llama_model_size(self._model.model))
        n_layers = int(llama_cpp.llama_model_n_layer(self._model.model)) + 1  # + the output
        self._load_log = load_log
        self.placement = placement.read(load_log, n_layers=n_layers)
        """Where llama.cpp put the model: device, device_name, gpu_layers, vram_mb."""
        self.gpu_layers = str(self.placement["gpu_layers"])
        """Layers on the GPU out of all of them, e.g. `19/19` (`0/19` on a CPU build)."""
        self.calls = 0
        log.info(
            "model_loaded",
            path=str(self.path),
            load_s=round(self.load_s, 3),
            model_mb=round(self.model_bytes / 2**20, 1),
            rss_mb=round(rss_mb(), 1),
            n_ctx=n_ctx,
            n_threads=threads,
            concurrency=self.concurrency,
            n_gpu_layers=mparams.n_gpu_layers,
            **self.placement,
        )

    def _chat_formatter(self) -> Jinja2ChatFormatter | None:
        template = self._model.metadata().get("tokenizer.chat_template")
        if not template:
            return None
        vocab = self._model.vocab
        bos = self._decoder.piece_special(llama_cpp.llama_vocab_bos(vocab))
        eos = self._decoder.piece_special(llama_cpp.llama_vocab_eos(vocab))
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    @property
    def name(self) -> str:
        return self._name

    @property
    def n_ctx(self) -> int:
        """The context window of one call, in tokens."""
        return self._decoder.n_ctx

    @property
    def busy(self) -> int:
        """Calls being decoded now (at most `concurrency`)."""
        return self._batch.busy if self._batch is not None else int(self._lock.locked())

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's tokens, rendered with the model's own chat template."""
        if self._formatter is None:
            # A base model (no chat template) reads the turns as one document.
            text = "\n\n".join(m["content"] for m in messages)
        else:
            turns: list[Any] = [dict(m) for m in messages]
            text = self._formatter(messages=turns).prompt
        bos = llama_cpp.llama_vocab_bos(self._model.vocab)
        tokens = self._decoder.tokenize(text, special=True)
        if self._formatter is None and bos >= 0 and self._model.add_bos_token():
            tokens.insert(0, bos)
        return tokens

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens, as the model reads an answer (no control tokens)."""
        return self._decoder.tokenize(text, special=False)

    def _fit(self, prompt: list[int], reserve: int) -> None:
        if len(prompt) + reserve > self.n_ctx:
            raise TaskInputError(
                f"the prompt has {len(prompt)} tokens and {reserve} more are reserved for the"
                f" answer, but the context window holds {self.n_ctx}: shorten the text or"
                " raise n_ctx (TASKLOOM_N_CTX)"
            )

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        grammar_first: bool = False,
        stop_at_json: bool = False,
        adapter: str | Path | None = None,
    ) -> Completion:
        """Complete the chat; with `schema`, the output is JSON that conforms to it.

        Args:
            grammar_first: mask the whole vocabulary at every token, as stock grammar
                sampling does, instead of checking the sampled token first. The greedy
                output is the same, only slower: for tests and benchmarks.
            stop_at_json: without a schema, stop as a schema's generation does, once the
                text is a whole JSON object (benchmarks compare the two stopping alike).
            adapter: a LoRA adapter GGUF to apply for this call (`adapters.py`).

        Raises:
            ConfigError: the adapter can't be loaded.
            SchemaError: the schema can't become a grammar.
            TaskInputError: the prompt doesn't fit the context window.
        """
        started = time.perf_counter()
        lora = None if adapter is None else self._adapters.get(adapter)
        call = tracing.model_call(
            self._name, provider=PROVIDER, max_tokens=max_tokens, temperature=temperature
        )
        with call as span, self._lock if self._batch is None else contextlib.nullcontext():
            prompt, out = self._generate(
                messages,
                schema,
                max_tokens,
                temperature,
                grammar_first=grammar_first,
                stop_at_json=stop_at_json,
                adapter=lora,
            )
            tracing.model_usage(span, model=self._name, inputs=len(prompt), outputs=len(out.tokens))
        self.calls += 1
        completion = Completion(
            text=out.text,
            model=self._name,
            prompt_tokens=len(prompt),
            completion_tokens=len(out.tokens),
            prompt_tokens_evaluated=out.prompt_tokens_evaluated,
            run_ms=(time.perf_counter() - started) * 1000,
            grammar_rejections=out.rejected,
            full_masks=out.full_masks,
            decodes=out.decodes,
            drafted=out.drafted,
            draft_accepted=out.draft_accepted,
        )
        log.debug("model_completed", **completion.model_dump(exclude={"text", "model", "tokens"}))
        completion.tokens = [
            TokenLogprob(
                text=self._decoder.piece(t).decode("utf-8", errors="replace"),
                logprob=lp,
                top_logprob=top,
            )
            for t, lp, top in zip(out.tokens, out.logprobs, out.top_logprobs, strict=True)
        ]
        return completion

    def _generate(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        *,
        grammar_first: bool,
        stop_at_json: bool = False,
        adapter: Adapter | None = None,
    ) -> tuple[list[int], Generated]:
        prompt = self.prompt_tokens(messages)
        self._fit(prompt, min(max_tokens, 16))
        grounding = None
        if schema is not None and GROUNDING_KEYWORD in schema:
            grounding = Grounding(str(schema[GROUNDING_KEYWORD]))
            schema = {k: v for k, v in schema.items() if k != GROUNDING_KEYWORD}
        with self._grammar_lock:
            grammar = None if schema is None else self._grammars.sampler(schema)
        is_done = json_done if schema is not None or stop_at_json else None
        drafter = self._templates.drafter(messages, prompt, schema) if self._max_draft else None
        try:
            if self._batch is None:
                generated = self._decoder.generate(
                    prompt,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    grammar=grammar,
                    is_done=is_done,
                    grammar_first=grammar_first,
                    no_repeat_ngram=NO_REPEAT_NGRAM,
                    grounding=grounding,
                    drafter=drafter,
                    max_draft=self._max_draft,
                    adapter=adapter,
                )
                return prompt, self._learned(schema, generated)
            draft = Draft(
                grammar=grammar,
                temperature=temperature,
                rng=np.random.default_rng(0),
                is_done=is_done,
                grammar_first=grammar_first,
                no_repeat_ngram=NO_REPEAT_NGRAM,
                grounding=grounding,
                drafter=drafter,
            )
            request = self._request(prompt, draft=draft, max_tokens=max_tokens, adapter=adapter)
            batched = self._batch.submit(request).wait().generated
            assert batched is not None
            return prompt, self._learned(schema, batched)
        finally:
            if grammar is not None:
                llama_cpp.llama_sampler_free(grammar)

    def _learned(self, schema: dict[str, Any] | None, generated: Generated) -> Generated:
        if self._max_draft:
            self._templates.learn(schema, generated.text)
        return generated

    def _request(self, prompt: list[int], **fields: Any) -> Request:
        """A batch request carrying the calling thread's deadline and cancel event."""
        return Request(
            prompt=prompt, deadline=deadline.current(), cancel=cancel.current(), **fields
        )

    def adapted(self, path: str | Path) -> AdaptedModel:
        """This model with the LoRA adapter at `path` on every call (ConfigError if bad)."""
        return AdaptedModel(self, self._adapters.get(path))

    @property
    def adapters(self) -> list[str]:
        """The file names of the LoRA adapters loaded so far."""
        return self._adapters.names

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        """The log-probability of each continuation as the start of the reply."""
        return self.score_usage(messages, continuations)[0]

    def score_usage(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> tuple[list[float], Completion]:
        """Like `score`, with the tokens it spent (as a Completion with empty text)."""
        return self.score_many([(messages, continuations)])[0]

    def score_many(
        self,
        calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
        *,
        prefixes: Sequence[str] | None = None,
        adapter: str | Path | None = None,
    ) -> list[tuple[list[float], Completion]]:
        """`score_usage` for several prompts, decoded together (`Batch`, `Decoder.score_many`).

        Args:
            prefixes: per call, text the reply starts with before each continuation. It
                joins the prompt, so it is evaluated once (and shared with any cached
                prompt it extends) rather than scored token by token per continuation.
            adapter: a LoRA adapter GGUF to apply for these calls (`adapters.py`).
        """
        lora = None if adapter is None else self._adapters.get(adapter)
        with tracing.model_call(self._name, provider=PROVIDER, operation="text_completion") as s:
            scored = self._score_many(calls, prefixes, lora)
            used = [c for _, c in scored]
            inputs, outputs = (
                sum(c.prompt_tokens for c in used),
                sum(c.completion_tokens for c in used),
            )
            tracing.model_usage(s, model=self._name, inputs=inputs, outputs=outputs)
        return scored

    def _score_many(
        self,
        calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
        prefixes: Sequence[str] | None,
        adapter: Adapter | None,
    ) -> list[tuple[list[float], Completion]]:
        started = time.perf_counter()
        prepared = []
        for i, (messages, continuations) in enumerate(calls):
            prompt = self.prompt_tokens(messages)
            if prefixes is not None and prefixes[i]:
                prompt += self._decoder.tokenize(prefixes[i], special=False)
            conts = [self._decoder.tokenize(c, special=False) for c in continuations]
            self._fit(prompt, max((len(c) for c in conts), default=0))
            if any(len(c) > N_BATCH for c in conts):
                raise TaskInputError(
                    f"a continuation to score is longer than {N_BATCH} tokens; shorten it"
                )
            prepared.append((prompt, conts))
        results: list[tuple[list[float], int]] = []
        if self._batch is None:
            with self._lock:
                results = self._decoder.score_many(prepared, adapter=adapter)
        else:
            batch = self._batch
            requests = [
                batch.submit(self._request(p, continuations=c, adapter=adapter))
                for p, c in prepared
            ]
            try:
                results = [(r.scores, r.evaluated) for r in (q.wait() for q in requests)]
            finally:
                for r in requests:  # an error in one: let the others finish first
                    r.done.wait()
        self.calls += len(prepared)
        run_ms = (time.perf_counter() - started) * 1000
        return [
            (
                scores,
                Completion(
                    text="",
                    model=self._name,
                    prompt_tokens=len(prompt),
                    completion_tokens=0,
                    prompt_tokens_evaluated=evaluated,
                    run_ms=run_ms,
                ),
            )
            for (scores, evaluated), (prompt, _) in zip(results, prepared, strict=True)
        ]

    def stats(self) -> dict[str, Any]:
        """Load time, memory and call count, for worker heartbeats and benchmarks."""
        return {
            "model": self._name,
            "path": str(self.path),
            "load_s": self.load_s,
            "model_mb": self.model_bytes / 2**20,
            "rss_mb": rss_mb(),
            "calls": self.calls,
            "grammars_compiled": self._grammars.compiled,
            "concurrency": self.concurrency,
            "gpu_layers": self.gpu_layers,
            "busy": self.busy,
            "adapters": self.adapters,
        }

    def reset_cache(self) -> None:
        """Forget the cached prefix (the next call evaluates its whole prompt)."""
        if self._batch is not None:
            self._batch.reset()
            return
        with self._lock:
            self._decoder.reset()

    def close(self) -> None:
        """Free the model; the host can't be used afterwards."""
        if self._batch is not None:
            self._batch.close()
        with self._lock:
            self._grammars.close()
            self._decoder.close()
            self._ctx.close()  # type: ignore[no-untyped-call]
            self._adapters.close()  # after the context that has one set, before the model
            self._model.close()  # type: ignore[no-untyped-call]
        log.info("model_closed", model=self._name, calls=self.calls)
