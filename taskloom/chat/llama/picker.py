"""Picking each next token: sample first, then check that one token against the grammar.

Grammar sampling follows llama.cpp's `grammar_first=false` path (`common_sampler_sample`
in `common/sampling.cpp`): sample from the raw logits first, then ask the grammar about
that one token. Only when it is rejected are more candidates masked: first the top
`TOP_K` by logit (for greedy decoding this yields exactly the token a full mask would),
and the whole vocabulary only when none of those is allowed. Gemma's vocabulary has
262k tokens, so masking all of it every step is what makes stock grammar sampling slow.

A `Draft` is one generation in progress; the sequential `Decoder` and the continuous
`Batch` both move it on with the same `Picker`, so they pick alike.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from taskloom.chat.grounding import TAIL, Grounding, continues, halts
from taskloom.errors import ModelError

if TYPE_CHECKING:
    from taskloom.chat.llama.speculate import Drafter

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
    decodes: int = 0
    """`llama_decode` calls the generation took after the prompt (each one evaluates the
    last picked token and any draft)."""
    drafted: int = 0
    """Tokens drafted for verification (`speculate.py`)."""
    draft_accepted: int = 0
    """Drafted tokens the model's own picks agreed with."""


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
    is_halted: bool = False
    """The run the text ends in was stopped (`grounding.halts`): no token may carry it on."""
    drafter: Drafter | None = None
    """Where drafts come from; None: no speculation (`speculate.py`)."""
    decodes: int = 0
    drafted: int = 0
    draft_accepted: int = 0

    def generated(self, evaluated: int) -> Generated:
        return Generated(
            tokens=self.out,
            text=self.text.decode("utf-8", errors="replace"),
            prompt_tokens_evaluated=evaluated,
            rejected=self.rejected,
            full_masks=self.full_masks,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
            decodes=self.decodes,
            drafted=self.drafted,
            draft_accepted=self.draft_accepted,
        )

    def proposal(self, n: int) -> list[int]:
        """Up to `n` drafted tokens to verify after the last picked one (greedy only)."""
        if self.drafter is None or self.temperature > 0 or n <= 0:
            return []
        return self.drafter.propose(self.out, self.text, n)


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
        lse = logsumexp(logits, top=top)
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
        if d.grounding is not None:
            if not self._is_grounded(d, token):
                d.ungrounded += 1
                d.is_halted = d.is_halted or halts(self._tail(d), self._text(token))
                token = self._grounded(d, logits, grammar)
            d.is_halted = d.is_halted and continues(self._text(token))
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

    def verify(
        self,
        draft: Draft,
        proposal: Sequence[int],
        logits_at: Callable[[int], npt.NDArray[np.single]],
    ) -> tuple[int, int | None]:
        """Pick at each drafted position until the pick differs from the draft
        (`speculate.py`).

        `logits_at(j)` gives the logits after the last picked token (j = 0) and after
        the first j drafted tokens. Returns how many drafted tokens were accepted, and
        the token to decode next (None once the generation finished).
        """
        draft.decodes += 1
        draft.drafted += len(proposal)
        for j in range(len(proposal) + 1):
            token = self.advance(draft, logits_at(j))
            if draft.is_finished or j == len(proposal) or token != proposal[j]:
                # A last pick that matched the draft used it too, though nothing follows.
                draft.draft_accepted += j + (j < len(proposal) and token == proposal[j])
                return j, None if draft.is_finished else token
        raise AssertionError("unreachable")  # pragma: no cover

    def _tail(self, d: Draft) -> str:
        # Only the text's tail can hold an unfinished run (`grounding.TAIL` characters).
        return d.text[-4 * TAIL :].decode("utf-8", errors="ignore")

    def _text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", errors="ignore")

    def _is_whole(self, token: int) -> bool:
        """Whether the token is whole characters (not a byte of one)."""
        try:
            self._piece(token).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def _is_grounded(self, d: Draft, token: int) -> bool:
        assert d.grounding is not None
        piece = self._text(token)
        if d.is_halted and continues(piece):
            return False
        return d.grounding.allows(self._tail(d), piece)

    def _grounded(self, d: Draft, logits: npt.NDArray[np.single], grammar: Any) -> int:
        """The model's best token that the grammar allows and that invents no id or number;
        failing that among the top candidates, the best allowed one with no digit.

        A piece of a character (a byte token) is taken only where nothing else is: it
        reads as no digit, and strung together such pieces spell characters of no
        language."""
        top = np.argpartition(logits, -TOP_K)[-TOP_K:]
        ranked = [int(t) for t in top[np.argsort(-logits[top])] if np.isfinite(logits[t])]

        def is_allowed(t: int) -> bool:
            if grammar is None:
                return True
            one = np.array([t], dtype=np.intc)
            return bool(np.isfinite(self._top.apply(grammar, one, logits[t : t + 1])[0]))

        allowed = [t for t in ranked if is_allowed(t)]
        allowed.sort(key=lambda t: not self._is_whole(t))  # stable: by rank otherwise
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


def _sample(logits: npt.NDArray[np.single], temperature: float, rng: np.random.Generator) -> int:
    z = logits.astype(np.float64) / temperature
    z -= z[np.isfinite(z)].max()
    p = np.where(np.isfinite(z), np.exp(z), 0.0)
    return int(rng.choice(len(p), p=p / p.sum()))


def logsumexp(logits: npt.NDArray[np.single], *, top: float | None = None) -> float:
    """log Σ exp(logits), the normaliser of a token's log-probability: one pass in float32
    (a float64 copy of 262k logits costs ten times as much, for digits no score reads).
    `top`: the logits' maximum, where the caller has it already."""
    top = float(logits.max()) if top is None else top
    return top + math.log(float(np.exp(logits - top).sum()))


def json_done(text: bytes) -> bool:
    """Whether `text` is already a whole JSON object or array (nothing can follow)."""
    stripped = text.rstrip()
    if not stripped.endswith((b"}", b"]")):
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True
