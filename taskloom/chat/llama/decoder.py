"""The decode loop: prefix reuse, generation and continuation scoring on one context.

Each token is picked by `picker.Picker` (grammar-checked sampling), and with speculation
on, drafted tokens are verified in the same decode (`speculate.py`).

Prefix reuse: the context keeps the tokens of recent calls in its KV cache, in a few
sequences (slots). A prompt goes to the slot that shares the longest prefix with it and
evaluates only what follows. A prompt that shares little with every slot (under half
of itself) spares the slot used last (the step's other prompt) and takes another: one
sharing at least a quarter of it, else the one unused longest. A slot remembers the
LoRA adapter its tokens were computed under and shares nothing with a call of another.

A lone token decoded on several threads goes with a throwaway row in a spare sequence:
with 512 or more cached cells llama.cpp's CPU attention splits one row's cache between
the threads, and rounds otherwise than for two to seven rows, where each row is computed
bit for bit as a lone one on one thread is. With the pad, a draft's verify decode gives
the logits one-token decoding gives, on any thread count (`speculate.MAX_DRAFT`).

Scoring several prompts (`score_many`, a step's review): on a CPU every `llama_decode`
costs about as much as 15 tokens before its first token (the weights are read once per
decode), so the calls are decoded together. Each (prompt, continuation) is a branch in
a sequence of its own beyond the slots, starting from the cached prefix of the slot
the first prompt chose; a token several branches share (the prompt's rest, the answer
up to a field) is evaluated once, in all their sequences (the KV cache is unified).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from taskloom import deadline
from taskloom.chat.grounding import Grounding
from taskloom.chat.llama.adapters import Adapter, apply
from taskloom.chat.llama.picker import Draft, Generated, Picker, logsumexp
from taskloom.chat.llama.speculate import Drafter
from taskloom.errors import ModelError, TaskInputError

N_SLOTS = 3
"""Prompts cached at once (KV sequences, a full window each): a step's two, and a spare."""
N_BRANCHES = 32
"""A review's scoring branches decoded at once (`score_many`); more go one by one."""


class Decoder:
    """Evaluates prompts and generates tokens on one llama.cpp context (not thread-safe).

    Args:
        model: the `llama_model` pointer.
        ctx: the `llama_context` pointer.
        n_batch: the most tokens decoded in one `llama_decode`.
        slots: sequences that cache prompts (default: all the context has); those
            beyond them are `score_many`'s branches (and a lone token's pad, module
            doc), which need a unified KV cache.
        n_ctx: the context window of one sequence (default: the context's).
    """

    def __init__(
        self,
        model: Any,
        ctx: Any,
        *,
        n_batch: int,
        slots: int | None = None,
        n_ctx: int | None = None,
    ) -> None:
        self._ctx = ctx
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._mem = llama_cpp.llama_get_memory(ctx)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = n_ctx or int(llama_cpp.llama_n_ctx_seq(ctx))
        """The context window of one sequence."""
        n_seq = int(llama_cpp.llama_n_seq_max(ctx))
        self._slots: list[list[int]] = [[] for _ in range(slots or n_seq)]
        self._branches = n_seq - len(self._slots)
        """Sequences beyond the slots, for `score_many`'s branches (a unified KV cache)."""
        self._tree = (
            llama_cpp.llama_batch_init(n_batch, 0, self._branches) if self._branches else None
        )
        padded = self._branches > 0 and llama_cpp.llama_n_threads(ctx) > 1
        self._pad = len(self._slots) if padded else None
        """The sequence of a lone token's throwaway row, emptied after each decode."""
        self._slot_adapters: list[Adapter | None] = [None for _ in self._slots]
        self._slot_used = [0 for _ in self._slots]  # when each slot was last chosen
        self._calls = 0
        self._applied: Adapter | None = None  # the adapter set on the context
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
        if self._tree is not None:
            llama_cpp.llama_batch_free(self._tree)
            self._tree = None

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

    def _decode(self, tokens: Sequence[int], *, logits_from: int | None = None) -> None:
        """Append `tokens` to the cache; logits for the last token, and for every one
        from index `logits_from` on (0: all of them)."""
        batch = self._batch
        first = len(tokens) if logits_from is None else logits_from
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            n_past = len(self.tokens)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = self._seq
                batch.logits[i] = start + i >= first
            batch.logits[len(chunk) - 1] = True
            batch.n_tokens = len(chunk)
            padded = self._pad is not None and len(chunk) == 1
            if padded:
                batch.token[1], batch.pos[1], batch.n_seq_id[1] = chunk[0], 0, 1
                batch.seq_id[1][0], batch.logits[1] = self._pad, False
                batch.n_tokens = 2
            rc = llama_cpp.llama_decode(self._ctx, batch)
            if padded:
                llama_cpp.llama_memory_seq_rm(self._mem, self._pad, -1, -1)
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

    def _choose_slot(self, prompt: Sequence[int], adapter: Adapter | None) -> None:
        for seq, slot in enumerate(self._slots):
            # A sliding-window layer that dropped a slot's oldest cells (Gemma 3's local
            # layers) leaves no prefix to reuse there.
            if slot and llama_cpp.llama_memory_seq_pos_min(self._mem, seq) > 0:
                llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
                slot.clear()
        shared = [
            common_prefix(slot, prompt) if self._slot_adapters[i] is adapter else 0
            for i, slot in enumerate(self._slots)
        ]
        best = max(range(len(shared)), key=shared.__getitem__)
        if shared[best] * 2 < len(prompt):
            # Little to reuse anywhere. A step alternates between its prompts (the
            # answer, then the review's), so the slot used last is the one to keep; of
            # the others, take the one sharing a real part of the prompt (the review's
            # instructions, cached by the last step's review), else the one unused longest.
            last = max(range(len(self._slots)), key=self._slot_used.__getitem__)
            others = [i for i in range(len(self._slots)) if i != last] or [last]
            useful = [n if n * 4 >= len(prompt) else 0 for n in shared]
            best = max(others, key=lambda i: (useful[i], -self._slot_used[i]))
        self._calls += 1
        self._slot_used[best] = self._calls
        self._seq = best
        if self._slot_adapters[best] is not adapter:  # its cache is of another adapter
            self._truncate(0)
            self._slot_adapters[best] = adapter
        if self._applied is not adapter:
            apply(self._ctx, adapter)
            self._applied = adapter

    def evaluate(self, prompt: Sequence[int], adapter: Adapter | None = None) -> int:
        """Make the cache hold exactly `prompt` under `adapter`, reusing the common prefix.

        Returns:
            How many prompt tokens were evaluated (at least one, for fresh logits).
        """
        rest = self._uncached(prompt, adapter)
        self._decode(rest)
        return len(rest)

    def _uncached(self, prompt: Sequence[int], adapter: Adapter | None) -> Sequence[int]:
        """Cut the cache back to what it shares with `prompt` under `adapter` and return
        the rest of `prompt`, to be decoded (at least its last token, for fresh logits)."""
        if not prompt:
            raise TaskInputError("an empty prompt has nothing to continue; give the step some text")
        self._choose_slot(prompt, adapter)
        self._truncate(min(common_prefix(self.tokens, prompt), len(prompt) - 1))
        return prompt[len(self.tokens) :]

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
        drafter: Drafter | None = None,
        max_draft: int = 0,
        adapter: Adapter | None = None,
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
            drafter: with `max_draft > 0` and greedy decoding, draft up to `max_draft`
                tokens with it and verify them in the same decode (`speculate.py`);
                the output is the same as without.
            adapter: the LoRA adapter to decode under (None: the model as it is).
        """
        evaluated = self.evaluate(prompt, adapter)
        draft = Draft(
            grammar=grammar,
            temperature=temperature,
            rng=rng if rng is not None else np.random.default_rng(0),
            is_done=is_done,
            grammar_first=grammar_first,
            no_repeat_ngram=no_repeat_ngram,
            grounding=grounding,
            drafter=drafter,
        )
        budget = min(max_tokens, self.n_ctx - len(self.tokens))
        if budget <= 0:
            return draft.generated(evaluated)
        token: int | None = self.picker.advance(draft, self.logits())
        picks = 1
        while token is not None and not draft.is_finished and picks < budget:
            deadline.check()  # the step's own deadline, if the worker set one
            proposal = draft.proposal(min(max_draft, budget - picks - 1))
            self._decode([token, *proposal], logits_from=0 if proposal else None)
            accepted, token = self.picker.verify(draft, proposal, self.logits)
            picks += accepted + 1
            self._truncate(len(self.tokens) - (len(proposal) - accepted))
        return draft.generated(evaluated)

    # --- scoring ---------------------------------------------------------------------

    def score(
        self,
        prompt: Sequence[int],
        continuations: Sequence[Sequence[int]],
        *,
        adapter: Adapter | None = None,
    ) -> tuple[list[float], int]:
        """Log-probability of each token sequence as the continuation of `prompt`.

        Returns:
            The scores, and how many tokens were evaluated for them.
        """
        rest = self._uncached(prompt, adapter)
        # The first continuation of several tokens rides in the decode of the prompt's
        # rest: on a CPU each `llama_decode` has a cost of its own, above its rows'.
        lead = next((i for i, c in enumerate(continuations) if len(c) > 1), None)
        if lead is not None and len(rest) + len(continuations[lead]) > self._n_batch:
            lead = None  # the decode would be split in chunks
        riding = continuations[lead][:-1] if lead is not None else []
        self._decode([*rest, *riding], logits_from=len(rest) - 1)
        evaluated = len(rest) + len(riding)
        last = len(rest) - 1 if riding else -1  # the output row of the prompt's last token
        first = self.logits(last)
        first_lse = logsumexp(first)
        # Read before any other decode overwrites the row.
        scores = [float(first[c[0]]) - first_lse if c else 0.0 for c in continuations]
        n0 = len(prompt)
        for i, cont in enumerate(continuations):
            if len(cont) < 2:
                continue
            if i == lead:
                row = last
            else:
                self._truncate(n0)
                self._decode(cont[:-1], logits_from=0)
                evaluated += len(cont) - 1
                row = -1
            for j in range(1, len(cont)):
                logits = self.logits(row + j)
                scores[i] += float(logits[cont[j]]) - logsumexp(logits)
        return scores, evaluated

    def score_many(
        self,
        calls: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
        *,
        adapter: Adapter | None = None,
    ) -> list[tuple[list[float], int]]:
        """`score` for several prompts, in one decode where they fit (module doc); else
        (more branches than sequences, or more tokens than a decode) one at a time.

        Returns:
            Per call, its scores and how many tokens were evaluated for it.
        """
        branches = [
            (i, j, cont)
            for i, (_, conts) in enumerate(calls)
            for j, cont in enumerate(conts)
            if cont
        ]
        fits = 0 < len(branches) <= self._branches and all(prompt for prompt, _ in calls)
        if not fits:
            return [self.score(p, c, adapter=adapter) for p, c in calls]
        self._choose_slot(calls[0][0], adapter)
        tree = _Tree(self.tokens)
        rows = [tree.add(b, calls[i][0], cont) for b, (i, _, cont) in enumerate(branches)]
        if len(tree.tokens) > self._n_batch:
            return [self.score(p, c, adapter=adapter) for p, c in calls]
        first = len(self._slots)
        for b, start in enumerate(tree.starts):
            if start:
                llama_cpp.llama_memory_seq_cp(self._mem, self._seq, first + b, 0, start)
        batch = self._tree
        assert batch is not None
        for n, token in enumerate(tree.tokens):
            batch.token[n] = token
            batch.pos[n] = tree.positions[n]
            batch.n_seq_id[n] = len(tree.members[n])
            for m, b in enumerate(tree.members[n]):
                batch.seq_id[n][m] = first + b
            batch.logits[n] = tree.wanted[n]
        batch.n_tokens = len(tree.tokens)
        try:
            if llama_cpp.llama_decode(self._ctx, batch) != 0:
                raise ModelError("llama_decode failed while scoring; the step can be retried")
            lse: dict[int, float] = {}
            scores = [[0.0] * len(conts) for _, conts in calls]  # an empty continuation: 0
            for (i, j, cont), nodes in zip(branches, rows, strict=True):
                for node, token in zip(nodes, cont, strict=True):
                    logits = self.logits(node)
                    if node not in lse:
                        lse[node] = logsumexp(logits)
                    scores[i][j] += float(logits[token]) - lse[node]
        finally:
            for b in range(len(branches)):
                llama_cpp.llama_memory_seq_rm(self._mem, first + b, -1, -1)
        evaluated = [0] * len(calls)
        for b, (i, _, _) in enumerate(branches):
            evaluated[i] += tree.created[b]
        return list(zip(scores, evaluated, strict=True))


class _Tree:
    """The tokens of `score_many`'s branches, each shared one evaluated once.

    A branch is a prompt and one continuation: it needs the logits after the prompt's
    last token and after each continuation token but the last. It starts where the
    cache holds its prompt (less one token, whose logits are needed).
    """

    def __init__(self, cached: Sequence[int]) -> None:
        self._cached = cached
        self._nodes: dict[tuple[int, int], int] = {}  # (parent node or -1 - start, token)
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.members: list[list[int]] = []  # per token, the branches it belongs to
        self.wanted: list[bool] = []  # per token, whether its logits are read
        self.starts: list[int] = []  # per branch, the cached tokens it begins with
        self.created: list[int] = []  # per branch, the tokens it added

    def add(self, branch: int, prompt: Sequence[int], cont: Sequence[int]) -> list[int]:
        """Add a branch; the token index of each row its continuation is scored on."""
        path = [*prompt, *cont[:-1]]
        start = min(common_prefix(self._cached, path), len(prompt) - 1)
        self.starts.append(start)
        self.created.append(0)
        parent, rows = -1 - start, []
        for k in range(start, len(path)):
            node = self._nodes.get((parent, path[k]))
            if node is None:
                node = self._nodes[(parent, path[k])] = len(self.tokens)
                self.tokens.append(path[k])
                self.positions.append(k)
                self.members.append([])
                self.wanted.append(False)
                self.created[branch] += 1
            self.members[node].append(branch)
            if k >= len(prompt) - 1:
                self.wanted[node] = True
                rows.append(node)
            parent = node
        return rows


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
