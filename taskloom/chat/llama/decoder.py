"""The decode loop: prefix reuse, grammar-checked sampling and continuation scoring.

Grammar sampling follows llama.cpp's `grammar_first=false` path (`common_sampler_sample`
in `common/sampling.cpp`): sample from the raw logits first, then ask the grammar about
that one token. Only when it is rejected are more candidates masked: first the top
`TOP_K` by logit (for greedy decoding this yields exactly the token a full mask would),
and the whole vocabulary only when none of those is allowed. Gemma's vocabulary has
262k tokens, so masking all of it every step is what makes stock grammar sampling slow.

Prefix reuse: the context keeps the tokens of recent calls in its KV cache, in a few
sequences (slots). A prompt goes to the slot that shares the longest prefix with it and
evaluates only what follows. A prompt that shares little with every slot (under half
of itself) replaces the slot holding the fewest tokens, so a short scratch prompt (such
as a scoring probe) never evicts a long shared instruction.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from taskloom import deadline
from taskloom.chat.grounding import TAIL, Grounding
from taskloom.errors import ModelError, TaskInputError

TOP_K = 64
"""Candidates tried after a rejected sample, before masking the whole vocabulary."""

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


@dataclass(frozen=True)
class Generated:
    """What one generation produced."""

    tokens: list[int]
    text: str
    prompt_tokens_evaluated: int
    rejected: int
    full_masks: int
    logprobs: list[float] = field(default_factory=list)
    """Per generated token: its log-probability under the model alone (no grammar)."""
    top_logprobs: list[float] = field(default_factory=list)
    """Per generated token: the log-probability of the model's own first choice there;
    above `logprobs` where the grammar overrode the model."""


class _Candidates:
    """A `llama_token_data_array` over a reusable numpy buffer."""

    def __init__(self, capacity: int) -> None:
        self.data = np.zeros(capacity, dtype=_TOKEN_DATA)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=0,
            selected=-1,
            sorted=False,
        )

    def apply(self, sampler: Any, ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> Any:
        """Let `sampler` mask these candidates; returns the masked logits (a view)."""
        n = len(ids)
        self.data["id"][:n] = ids
        self.data["logit"][:n] = logits
        self.data["p"][:n] = 0.0
        self.array.size = n
        self.array.selected = -1
        self.array.sorted = False
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(self.array))
        # Samplers may shrink the array but this one only sets logits to -inf in place.
        return self.data["logit"][: self.array.size]


@dataclass
class Draft:
    """One generation in progress: its settings, the tokens so far and what it has seen."""

    grammar: Any
    temperature: float
    rng: np.random.Generator
    is_done: Callable[[bytes], bool] | None = None
    grammar_first: bool = False
    no_repeat_ngram: int = 0
    out: list[int] = field(default_factory=list)
    text: bytes = b""
    rejected: int = 0
    full_masks: int = 0
    is_finished: bool = False
    followers: dict[tuple[int, ...], set[int]] = field(default_factory=dict)
    """For no-repeat: the tokens seen after each run of n - 1 tokens."""
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[float] = field(default_factory=list)
    grounding: Grounding | None = None
    """Ids and numbers must come from this source (`taskloom.chat.grounding`)."""
    ungrounded: int = 0
    """Tokens the grounding turned down."""

    def generated(self, evaluated: int) -> Generated:
        return Generated(
            tokens=self.out,
            text=self.text.decode("utf-8", errors="replace"),
            prompt_tokens_evaluated=evaluated,
            rejected=self.rejected,
            full_masks=self.full_masks,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
        )


class Picker:
    """Chooses each next token of a draft: sample first, then check it against the grammar.

    Not thread-safe (it reuses candidate buffers): one decode loop owns it.
    """

    def __init__(self, vocab: Any, n_vocab: int, *, piece: Callable[[int], bytes]) -> None:
        self._vocab = vocab
        self._piece = piece
        self._all = _Candidates(n_vocab)
        self._all_ids = np.arange(n_vocab, dtype=np.intc)
        ends = {llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)}
        # End tokens join the top-K retry so that a finished grammar never needs a full mask.
        self._ends = np.array(sorted(t for t in ends if t >= 0), dtype=np.intc)
        self._top = _Candidates(TOP_K + len(self._ends))
        self._n_vocab = n_vocab
        self._blank: npt.NDArray[np.intc] | None = None

    @property
    def blank(self) -> npt.NDArray[np.intc]:
        """Tokens made of whitespace alone (found once, on first use)."""
        if self._blank is None:
            found = [t for t in range(self._n_vocab) if (p := self._piece(t)) and not p.strip()]
            self._blank = np.array(found, dtype=np.intc)
        return self._blank

    def advance(self, d: Draft, logits: npt.NDArray[np.single]) -> int:
        """Pick the next token from `logits` (a view it may modify) and add it to `d`.

        Returns the token to decode next; when `d.is_finished` is set, nothing is.

        Raises:
            ModelError: the grammar allows no token here.
        """
        out, n, grammar = d.out, d.no_repeat_ngram, d.grammar
        # The model's own view of each token (confidence reads it): one pass over the
        # logits, small beside the decode that produced them.
        top = float(logits.max())
        lse = top + math.log(float(np.exp(logits - top).sum()))
        banned = d.followers.get(tuple(out[-(n - 1) :])) if n and len(out) >= n - 1 else None
        if grammar is not None:
            # A JSON answer never needs a token of whitespace alone (" " then "1" can
            # always be " 1"), and greedy decoding that takes one lands off the model's
            # own path: after `"order_id": ` + " ", this model wants a bare number, which
            # the schema forbids, and null wins over the id it would have quoted.
            banned = {*(banned or ()), *self.blank.tolist()}
        if banned:
            ids = np.fromiter(banned, dtype=np.intc)
            saved = logits[ids].copy()
            logits[ids] = -np.inf
        if grammar is not None and d.grammar_first:
            masked = self._all.apply(grammar, self._all_ids, logits)
            token = int(self._all_ids[int(np.argmax(masked))])
            d.full_masks += 1
            llama_cpp.llama_sampler_accept(grammar, token)
        else:
            token = self._pick(logits, d.temperature, d.rng)
        if grammar is not None and not d.grammar_first:
            allowed = self._top.apply(
                grammar, np.array([token], dtype=np.intc), logits[token : token + 1]
            )
            if not np.isfinite(allowed[0]):
                d.rejected += 1
                try:
                    token, is_full = self._pick_allowed(grammar, logits, d.temperature, d.rng)
                except ModelError:
                    if not banned:
                        raise
                    logits[ids] = saved  # the grammar allows only a repeat here
                    token, is_full = self._pick_allowed(grammar, logits, d.temperature, d.rng)
                d.full_masks += is_full
        if d.grounding is not None and not self._is_grounded(d, token):
            d.ungrounded += 1
            token = self._grounded(d, logits, grammar)
        if grammar is not None and not d.grammar_first:
            llama_cpp.llama_sampler_accept(grammar, token)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            d.is_finished = True
            return token
        if n and len(out) >= n - 1:
            d.followers.setdefault(tuple(out[len(out) - n + 1 :]), set()).add(token)
        out.append(token)
        d.logprobs.append(float(logits[token]) - lse)
        d.top_logprobs.append(top - lse)
        d.text += self._piece(token)
        if d.is_done is not None and d.is_done(d.text):
            d.is_finished = True
        return token

    def _is_grounded(self, d: Draft, token: int) -> bool:
        assert d.grounding is not None
        # Only the text's tail can hold an unfinished run (`grounding.TAIL` characters).
        tail = d.text[-4 * TAIL :].decode("utf-8", errors="ignore")
        return d.grounding.allows(tail, self._piece(token).decode("utf-8", errors="ignore"))

    def _grounded(self, d: Draft, logits: npt.NDArray[np.single], grammar: Any) -> int:
        """The model's best token that the grammar allows and that invents no id or number;
        failing that among the top candidates, the best allowed one with no digit."""
        top = np.argpartition(logits, -TOP_K)[-TOP_K:]
        ranked = [int(t) for t in top[np.argsort(-logits[top])] if np.isfinite(logits[t])]

        def is_allowed(t: int) -> bool:
            if grammar is None:
                return True
            one = np.array([t], dtype=np.intc)
            return bool(np.isfinite(self._top.apply(grammar, one, logits[t : t + 1])[0]))

        allowed = [t for t in ranked if is_allowed(t)]
        for t in allowed:
            if self._is_grounded(d, t):
                return t
        for t in allowed:
            if not any(c in b"0123456789" for c in self._piece(t)):
                return t
        return allowed[0] if allowed else ranked[0]

    def _pick(
        self, logits: npt.NDArray[np.single], temperature: float, rng: np.random.Generator
    ) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        # Sampling from the top candidates only keeps this cheap on a 262k vocabulary.
        top = np.argpartition(logits, -TOP_K)[-TOP_K:]
        return int(top[_sample(logits[top], temperature, rng)])

    def _pick_allowed(
        self,
        grammar: Any,
        logits: npt.NDArray[np.single],
        temperature: float,
        rng: np.random.Generator,
    ) -> tuple[int, bool]:
        """The best (or a sampled) token the grammar allows: top-K first, then all."""
        top = np.argpartition(logits, -TOP_K)[-TOP_K:].astype(np.intc)
        top = np.concatenate([top, self._ends[~np.isin(self._ends, top)]])
        masked = self._top.apply(grammar, top, logits[top])
        ids, is_full = top, False
        if not np.isfinite(masked).any():
            masked = self._all.apply(grammar, self._all_ids, logits)
            ids, is_full = self._all_ids, True
            if not np.isfinite(masked).any():
                raise ModelError("the grammar allows no token here; check the output schema")
        if temperature <= 0:
            return int(ids[int(np.argmax(masked))]), is_full
        return int(ids[_sample(masked, temperature, rng)]), is_full


class Decoder:
    """Evaluates prompts and generates tokens on one llama.cpp context (not thread-safe).

    Args:
        model: the `llama_model` pointer.
        ctx: the `llama_context` pointer (sequence 0 is used).
        n_batch: the most tokens decoded in one `llama_decode`.
    """

    def __init__(self, model: Any, ctx: Any, *, n_batch: int) -> None:
        self._ctx = ctx
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._mem = llama_cpp.llama_get_memory(ctx)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx_seq(ctx))
        """The context window of one sequence."""
        self._slots: list[list[int]] = [[] for _ in range(llama_cpp.llama_n_seq_max(ctx))]
        self._seq = 0
        self._n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self.picker = Picker(self._vocab, self.n_vocab, piece=self.piece)

    @property
    def tokens(self) -> list[int]:
        """The tokens of the active sequence whose keys and values are cached, in order."""
        return self._slots[self._seq]

    def close(self) -> None:
        """Free the batch (the context and model belong to the host)."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    # --- tokens -----------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of `text`; `special` parses control tokens such as `<start_of_turn>`."""
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens give b"")."""
        found = self._pieces.get(token)
        if found is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            found = buf.raw[: max(n, 0)]
            self._pieces[token] = found
        return found

    def piece_special(self, token: int) -> str:
        """The text of a control token, such as `<bos>`."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # --- evaluation ----------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], *, all_logits: bool = False) -> None:
        """Append `tokens` to the cache; logits for the last (or every) token."""
        batch = self._batch
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            n_past = len(self.tokens)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = self._seq
                batch.logits[i] = all_logits
            batch.logits[len(chunk) - 1] = True
            batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(self._ctx, batch)
            if rc != 0:
                self.reset()
                raise ModelError(f"llama_decode returned {rc}; the step can be retried")
            self.tokens.extend(chunk)

    def reset(self) -> None:
        """Forget the cache (after an error, or to measure a cold prompt)."""
        llama_cpp.llama_memory_clear(self._mem, True)
        for slot in self._slots:
            slot.clear()

    def _truncate(self, n: int) -> None:
        if n < len(self.tokens):
            if not llama_cpp.llama_memory_seq_rm(self._mem, self._seq, n, -1):
                self.reset()
                return
            del self.tokens[n:]

    def _choose_slot(self, prompt: Sequence[int]) -> None:
        for seq, slot in enumerate(self._slots):
            # A sliding-window layer that dropped a slot's oldest cells (Gemma 3's local
            # layers) leaves no prefix to reuse there.
            if slot and llama_cpp.llama_memory_seq_pos_min(self._mem, seq) > 0:
                llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
                slot.clear()
        shared = [common_prefix(slot, prompt) for slot in self._slots]
        best = max(range(len(shared)), key=shared.__getitem__)
        if shared[best] * 2 < len(prompt):
            best = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        self._seq = best

    def evaluate(self, prompt: Sequence[int]) -> int:
        """Make the cache hold exactly `prompt`, reusing the common prefix.

        Returns:
            How many prompt tokens were evaluated (at least one, for fresh logits).
        """
        if not prompt:
            raise TaskInputError("an empty prompt has nothing to continue; give the step some text")
        self._choose_slot(prompt)
        n = min(common_prefix(self.tokens, prompt), len(prompt) - 1)
        self._truncate(n)
        self._decode(prompt[len(self.tokens) :])
        return len(prompt) - n

    def logits(self, i: int = -1) -> npt.NDArray[np.single]:
        """Logits of output `i` of the last decode (a view; copy before decoding again)."""
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    # --- generation ------------------------------------------------------------------

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        grammar: Any = None,
        is_done: Callable[[bytes], bool] | None = None,
        rng: np.random.Generator | None = None,
        grammar_first: bool = False,
        no_repeat_ngram: int = 0,
        grounding: Grounding | None = None,
    ) -> Generated:
        """Generate after `prompt` until an end-of-generation token or `max_tokens`.

        Args:
            grammar: a llama.cpp grammar sampler (owned by the caller), or None.
            is_done: stop early once this returns True for the bytes so far.
            grammar_first: mask the whole vocabulary before every pick, as stock
                grammar sampling does (slow; for tests and benchmarks).
            no_repeat_ngram: with n > 0, never generate the same n tokens twice (unless
                the grammar allows nothing else); this stops greedy decoding's loops.
            grounding: ids and numbers must come from its source (`chat.grounding`).
        """
        evaluated = self.evaluate(prompt)
        draft = Draft(
            grammar=grammar,
            temperature=temperature,
            rng=rng if rng is not None else np.random.default_rng(0),
            is_done=is_done,
            grammar_first=grammar_first,
            no_repeat_ngram=no_repeat_ngram,
            grounding=grounding,
        )
        for _ in range(min(max_tokens, self.n_ctx - len(self.tokens))):
            deadline.check()  # the step's own deadline, if the worker set one
            token = self.picker.advance(draft, self.logits())
            if draft.is_finished:
                break
            self._decode([token])
        return draft.generated(evaluated)

    # --- scoring ---------------------------------------------------------------------

    def score(
        self, prompt: Sequence[int], continuations: Sequence[Sequence[int]]
    ) -> tuple[list[float], int]:
        """Log-probability of each token sequence as the continuation of `prompt`.

        Returns:
            The scores, and how many tokens were evaluated for them.
        """
        evaluated = self.evaluate(prompt)
        first = log_softmax(self.logits())
        n0 = len(prompt)
        scores = []
        for cont in continuations:
            if not cont:
                scores.append(0.0)
                continue
            total = float(first[cont[0]])
            if len(cont) > 1:
                self._truncate(n0)
                self._decode(cont[:-1], all_logits=True)
                evaluated += len(cont) - 1
                for j in range(1, len(cont)):
                    total += float(log_softmax(self.logits(j - 1))[cont[j]])
            scores.append(total)
        return scores, evaluated


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def log_softmax(x: npt.NDArray[np.single]) -> npt.NDArray[np.float64]:
    x64 = x.astype(np.float64)
    top = x64.max()
    out: npt.NDArray[np.float64] = x64 - (top + np.log(np.exp(x64 - top).sum()))
    return out


def _sample(logits: npt.NDArray[np.single], temperature: float, rng: np.random.Generator) -> int:
    z = logits.astype(np.float64) / temperature
    z -= z[np.isfinite(z)].max()
    p = np.where(np.isfinite(z), np.exp(z), 0.0)
    return int(rng.choice(len(p), p=p / p.sum()))
