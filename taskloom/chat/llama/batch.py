"""Continuous batching: many generations and scorings at once on one llama.cpp context.

One thread owns the context. Each step it makes one `llama_decode` that holds, for every
running sequence, its next token (generation) or the tokens of one continuation
(scoring), plus chunks of the prompts of joining sequences. Requests come from the
threads running steps and join at the next step; a finished one leaves at once, and its
sequence takes the next request. So N steps cost about one decode per token, not N.

Per sequence: its own grammar sampler, temperature, stop test and no-repeat memory
(a `Draft`), picked with the decoder's sample-then-check `Picker`; its own deadline
(captured from the submitting thread) and cancel event. A failure in one sequence
(a grammar with no allowed token, a deadline passed, a cancel) fails that request only.

Shared prefixes: the KV cache is unified, so a sequence whose prompt starts like one
already cached (the system text, a kind's instructions and examples) copies those
cells with `llama_memory_seq_cp`, which only tags them with the new sequence id. A
joining prompt that shares its start with a prompt still being evaluated waits for that
one to pass the shared part, then forks it: 16 steps with the same examples pay for the
prefix once. Finished sequences keep their tokens cached for later requests.

No stalls: while any sequence is generating, joining prompts are evaluated at most
`chunk` tokens per step, so a long prompt delays the others by one chunk at a time.

LoRA adapters (`adapters.py`): one decode runs under one adapter set, so each step
decodes the requests of one adapter only, the adapters with work taking turns step by
step. A sequence remembers the adapter its cache was computed under; prefixes are
reused and forked only between requests of the same adapter.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from taskloom.chat.llama.adapters import Adapter, apply, key, next_group
from taskloom.chat.llama.decoder import common_prefix
from taskloom.chat.llama.picker import Draft, Generated, Picker, logsumexp
from taskloom.chat.llama.speculate import draft_size
from taskloom.deadline import Deadline
from taskloom.errors import ModelError, RunCancelledError, TaskloomError
from taskloom.logs import get_logger

log = get_logger(__name__)

CHUNK = 128
"""Prompt tokens evaluated per step while other sequences are generating."""


class _Phase(Enum):
    PROMPT = "prompt"
    GENERATE = "generate"
    SCORE = "score"


@dataclass(eq=False)
class Request:
    """One generation (`draft` set) or one scoring (`continuations` set), and its outcome."""

    prompt: list[int]
    draft: Draft | None = None
    max_tokens: int = 0
    continuations: list[list[int]] | None = None
    deadline: Deadline | None = None
    cancel: threading.Event | None = None
    adapter: Adapter | None = None  # the LoRA adapter to decode under
    done: threading.Event = field(default_factory=threading.Event)
    generated: Generated | None = None
    scores: list[float] = field(default_factory=list)
    evaluated: int = 0
    error: BaseException | None = None
    is_reset: bool = False  # not a request: forget the cache once the batch is idle

    def wait(self) -> Request:
        """Block until the request finished; re-raise its error."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self


@dataclass(eq=False)
class _Seq:
    """One KV sequence: the tokens it has cached and the request it is serving."""

    id: int
    tokens: list[int] = field(default_factory=list)
    request: Request | None = None
    adapter: Adapter | None = None  # the one its cached tokens were computed under
    phase: _Phase = _Phase.PROMPT
    order: int = 0  # admission order: a later prompt waits for an earlier one's prefix
    next: list[int] = field(default_factory=list)  # the generated token to decode next
    proposal: list[int] = field(default_factory=list)  # drafted tokens decoded after it
    picks: int = 0
    budget: int = 0
    n_prompt: int = 0  # scoring: where each continuation starts
    cont: int = 0  # scoring: the continuation being evaluated


class Batch:
    """Runs requests on one llama.cpp context, up to `n_seq` at once (see the module doc).

    Args:
        ctx: the `llama_context` pointer, created with `n_seq_max >= n_seq` and a
            unified KV cache of `n_seq * n_ctx` cells; this object's thread owns it.
        picker: the token picker (used only on this object's thread).
        n_vocab: the vocabulary size.
        n_seq: sequences at once.
        n_ctx: the most tokens one sequence may hold.
        n_batch: the most tokens in one `llama_decode`.
        chunk: prompt tokens per step while others generate.
        draft_allowance: drafted tokens per step, shared by the generating sequences
            (0: no speculation; `speculate.py`).
    """

    def __init__(
        self,
        ctx: Any,
        picker: Picker,
        *,
        n_vocab: int,
        n_seq: int,
        n_ctx: int,
        n_batch: int,
        chunk: int = CHUNK,
        draft_allowance: int = 0,
    ) -> None:
        self._ctx = ctx
        self._draft_allowance = draft_allowance
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._picker = picker
        self.n_vocab = n_vocab
        self.n_seq = n_seq
        self.n_ctx = n_ctx
        self._n_batch = n_batch
        self._chunk = chunk
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._seqs = [_Seq(i) for i in range(n_seq)]
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._admitted = 0
        self._group: str | None = None  # the adapter group decoded last
        self._applied: Adapter | None = None  # the adapter set on the context
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name="taskloom-batch", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> int:
        """Sequences serving a request now."""
        return sum(s.request is not None for s in self._seqs)

    def submit(self, request: Request) -> Request:
        """Queue a request; it joins the batch at the next step (call `wait`)."""
        if not request.prompt:
            raise ModelError("an empty prompt has nothing to continue")
        with self._cond:
            if self._closed:
                raise ModelError("the model host is closed")
            self._queue.append(request)
            self._cond.notify()
        return request

    def reset(self) -> None:
        """Forget every cached token (waits for running requests first)."""
        forget = Request(prompt=[], is_reset=True)
        with self._cond:
            self._queue.append(forget)
            self._cond.notify()
        forget.wait()

    def close(self) -> None:
        """Finish the running requests, fail the queued ones, stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)

    # -- the loop (this object's thread only) ------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self.busy and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for r in self._queue:
                        self._fail(None, r, ModelError("the model host closed"))
                    self._queue.clear()
                    if not self.busy:
                        return
                self._admit()
            try:
                self._step()
            except Exception as e:  # never let the loop die with requests waiting on it
                log.exception("batch_step_crashed")
                for seq in self._seqs:
                    if seq.request is not None:
                        self._fail(seq, seq.request, ModelError(f"the batch failed: {e!r}"))
                self._forget()

    def _admit(self) -> None:
        """Give queued requests to idle sequences, each to the one sharing most of it."""
        while self._queue:
            head = self._queue[0]
            if head.is_reset:
                if self.busy:
                    return
                self._queue.popleft()
                self._forget()
                head.done.set()
                continue
            idle = [s for s in self._seqs if s.request is None]
            if not idle:
                return
            request = self._queue.popleft()
            shared = {s.id: self._shared(s, request) for s in idle}
            seq = max(idle, key=lambda s: shared[s.id])
            if shared[seq.id] * 2 < len(request.prompt):
                # Little to reuse: spare the cached prompts that later calls may want
                # (a step's answer prompt, while its review runs) and take the sequence
                # unused longest; `_fork_or_wait` still copies any shared start.
                seq = min(idle, key=lambda s: s.order)
            keep = min(shared[seq.id], len(request.prompt) - 1)
            self._truncate(seq, keep)
            seq.adapter = request.adapter
            self._admitted += 1
            seq.request, seq.phase, seq.order = request, _Phase.PROMPT, self._admitted
            seq.next, seq.picks, seq.cont = [], 0, 0
            request.evaluated = len(request.prompt) - keep

    def _step(self) -> None:
        entries: list[tuple[_Seq, list[int], bool]] = []  # (sequence, tokens, all logits)
        room = self._n_batch
        for seq in self._seqs:
            stop = _stop_reason(seq.request) if seq.request is not None else None
            if seq.request is not None and stop is not None:
                self._fail(seq, seq.request, stop)
        running = [s for s in self._seqs if s.request is not None]
        if not running:
            return
        # One adapter per decode: this step serves one group, the next step the next.
        self._group = next_group((key(s.adapter) for s in running), self._group)
        group = [s for s in running if key(s.adapter) == self._group]
        generating = [s for s in group if s.phase is _Phase.GENERATE]
        size = draft_size(self._draft_allowance, len(generating))
        for seq in generating:
            draft = seq.request.draft if seq.request else None
            seq.proposal = draft.proposal(min(size, seq.budget - seq.picks - 1)) if draft else []
            entries.append((seq, seq.next + seq.proposal, bool(seq.proposal)))
            room -= 1 + len(seq.proposal)
        for seq in group:
            if seq.phase is _Phase.SCORE:
                tokens = self._continuation(seq)[:-1]
                if len(tokens) <= room:
                    entries.append((seq, tokens, True))
                    room -= len(tokens)
        prompt_room = min(room, self._chunk) if entries else room
        joining = [s for s in group if s.phase is _Phase.PROMPT]
        for seq in sorted(joining, key=lambda s: s.order):
            if prompt_room <= 0:
                break
            if self._fork_or_wait(seq, joining):
                continue
            prompt = seq.request.prompt if seq.request else []
            tokens = prompt[len(seq.tokens) : len(seq.tokens) + prompt_room]
            entries.append((seq, tokens, False))
            prompt_room -= len(tokens)
        if entries:
            if self._applied is not group[0].adapter:
                apply(self._ctx, group[0].adapter)
                self._applied = group[0].adapter
            self._decode(entries)

    def _fork_or_wait(self, seq: _Seq, joining: list[_Seq]) -> bool:
        """Copy the longest cached prefix of this prompt from another sequence; True to
        wait, when an earlier joining prompt will soon have cached more of it."""
        assert seq.request is not None
        prompt = seq.request.prompt
        cap = len(prompt) - 1
        best, source = len(seq.tokens), None
        for other in self._seqs:
            if other is not seq:
                n = min(self._shared(other, seq.request), cap)
                if n > best:
                    best, source = n, other
        if source is not None:
            llama_cpp.llama_memory_seq_cp(self._mem, source.id, seq.id, len(seq.tokens), best)
            seq.request.evaluated -= best - len(seq.tokens)
            seq.tokens = list(prompt[:best])
        for other in joining:  # all of this step's group: of the same adapter
            if other.order < seq.order and other.request is not None:
                shared = min(common_prefix(other.request.prompt, prompt), cap)
                if shared > len(seq.tokens) and len(other.tokens) < shared:
                    return True
        return False

    def _decode(self, entries: list[tuple[_Seq, list[int], bool]]) -> None:
        batch = self._batch
        i = 0
        for seq, tokens, all_logits in entries:
            start = len(seq.tokens)
            for j, tok in enumerate(tokens):
                batch.token[i] = tok
                batch.pos[i] = start + j
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq.id
                batch.logits[i] = all_logits
                i += 1
            batch.logits[i - 1] = True
        batch.n_tokens = i
        rc = llama_cpp.llama_decode(self._ctx, batch)
        self.steps += 1
        if rc != 0:
            error = ModelError(f"llama_decode returned {rc}; the step can be retried")
            for seq, _, _ in entries:
                if seq.request is not None:
                    self._fail(seq, seq.request, error)
                self._truncate(seq, 0)
            return
        i = 0
        for seq, tokens, _ in entries:
            seq.tokens.extend(tokens)
            i += len(tokens)
            request = seq.request
            if request is None:
                continue
            try:
                self._after(seq, request, first=i - len(tokens), last=i - 1)
            except Exception as e:  # this request's own failure (its grammar, its stop test)
                self._fail(seq, request, e)

    def _after(self, seq: _Seq, request: Request, *, first: int, last: int) -> None:
        """Move a sequence on once its tokens of this step are decoded."""
        if seq.phase is _Phase.PROMPT:
            if len(seq.tokens) < len(request.prompt):
                return  # more prompt chunks to go
            if request.draft is not None:
                seq.phase, seq.picks = _Phase.GENERATE, 0
                seq.budget = min(request.max_tokens, self.n_ctx - len(seq.tokens))
                self._pick(seq, request, self._logits(last))
                return
            seq.phase, seq.n_prompt, seq.cont = _Phase.SCORE, len(seq.tokens), 0
            head = self._logits(last)
            lse = logsumexp(head)
            conts = request.continuations or []
            request.scores = [float(head[c[0]]) - lse if c else 0.0 for c in conts]
            self._next_continuation(seq, request)
        elif seq.phase is _Phase.GENERATE:
            assert request.draft is not None
            proposal = seq.proposal
            accepted, token = self._picker.verify(
                request.draft, proposal, lambda j: self._logits(first + j)
            )
            seq.picks += accepted + 1
            self._truncate(seq, len(seq.tokens) - (len(proposal) - accepted))
            if token is None or seq.picks >= seq.budget:
                self._complete(seq, request)
            else:
                seq.next = [token]
        else:
            cont = self._continuation(seq)
            for j in range(1, len(cont)):
                logits = self._logits(first + j - 1)
                request.scores[seq.cont] += float(logits[cont[j]]) - logsumexp(logits)
            request.evaluated += len(cont) - 1
            seq.cont += 1
            self._next_continuation(seq, request)

    def _pick(self, seq: _Seq, request: Request, logits: npt.NDArray[np.single]) -> None:
        draft = request.draft
        assert draft is not None
        if seq.budget <= 0:
            self._complete(seq, request)
            return
        token = self._picker.advance(draft, logits)
        seq.picks += 1
        if draft.is_finished or seq.picks >= seq.budget:
            self._complete(seq, request)
        else:
            seq.next = [token]

    def _continuation(self, seq: _Seq) -> list[int]:
        conts = seq.request.continuations if seq.request else None
        return conts[seq.cont] if conts and seq.cont < len(conts) else []

    def _next_continuation(self, seq: _Seq, request: Request) -> None:
        """Skip continuations with nothing to evaluate past their first token; rewind the
        sequence to the prompt for the next one."""
        conts = request.continuations or []
        while seq.cont < len(conts) and len(conts[seq.cont]) <= 1:
            seq.cont += 1
        if seq.cont >= len(conts):
            self._complete(seq, request)
        else:
            self._truncate(seq, seq.n_prompt)

    def _logits(self, i: int) -> npt.NDArray[np.single]:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    # -- sequences ---------------------------------------------------------------------

    def _shared(self, seq: _Seq, request: Request) -> int:
        """How much of the request's prompt this sequence's cache can give: its common
        prefix, or nothing once a sliding-window layer has dropped its oldest cells
        (Gemma 3's local layers), since a prefix copied from it would miss them, or
        when its cache was computed under another adapter."""
        if not seq.tokens or seq.adapter is not request.adapter:
            return 0
        if llama_cpp.llama_memory_seq_pos_min(self._mem, seq.id) > 0:
            return 0
        return common_prefix(seq.tokens, request.prompt)

    def _truncate(self, seq: _Seq, n: int) -> None:
        if n < len(seq.tokens):
            if not llama_cpp.llama_memory_seq_rm(self._mem, seq.id, n, -1):
                llama_cpp.llama_memory_seq_rm(self._mem, seq.id, -1, -1)
                n = 0
            del seq.tokens[n:]

    def _forget(self) -> None:
        llama_cpp.llama_memory_clear(self._mem, True)
        for seq in self._seqs:
            seq.tokens.clear()

    def _complete(self, seq: _Seq, request: Request) -> None:
        if request.draft is not None:
            request.generated = request.draft.generated(request.evaluated)
        seq.request = None
        request.done.set()

    def _fail(self, seq: _Seq | None, request: Request, error: BaseException) -> None:
        log.debug("batch_request_failed", error=str(error))
        request.error = error
        if seq is not None:
            seq.request = None
            if seq.phase is _Phase.SCORE:
                self._truncate(seq, seq.n_prompt)
        request.done.set()


def _stop_reason(request: Request) -> TaskloomError | None:
    """Why a request must stop now: its step was cancelled or ran past its deadline."""
    if request.cancel is not None and request.cancel.is_set():
        return RunCancelledError("the run was cancelled")
    if request.deadline is not None and request.deadline.remaining() <= 0:
        return request.deadline.error()
    return None
