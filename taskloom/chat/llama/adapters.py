"""LoRA adapters on the model host: loaded once, applied per call, grouped per decode.

`taskloom learn --adapter` writes llama.cpp's LoRA GGUF (`taskloom.adapters.file`). A
step whose job names one runs on `ModelHost.adapted(path)`, an `AdaptedModel` that
forwards every call to the host with `adapter=path`. The host loads each file once
(`Adapters`), and the decode loops set it on the context before decoding (`apply`).

Two rules keep outputs exact. The KV cache computed under one adapter is wrong under
another, so cached prefixes are reused only by calls of the same adapter (the decoder's
slots and the batch's sequences remember which one filled them). And one `llama_decode`
runs under one adapter set, so a batch decodes the sequences of one adapter per step,
taking the adapters in turn (`next_group`).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import llama_cpp

from taskloom.adapters.file import check_adapter
from taskloom.chat.llama.placement import listen
from taskloom.errors import ConfigError

if TYPE_CHECKING:
    from taskloom.chat.base import Completion, Message

BASE = ""
"""The group key of calls that run the model as it is."""


@dataclass(frozen=True, eq=False)
class Adapter:
    """One loaded adapter file (compared by identity: the host loads each file once)."""

    path: Path
    handle: Any  # the llama_adapter_lora pointer

    @property
    def name(self) -> str:
        return self.path.name


def key(adapter: Adapter | None) -> str:
    """The group a call decodes in: its adapter's path, or BASE."""
    return BASE if adapter is None else str(adapter.path)


def next_group(groups: Iterable[str], last: str | None) -> str:
    """The group to decode this step: the one after `last` in sorted order, wrapping
    round, so every group with work gets its turn and none starves."""
    ordered = sorted(set(groups))
    if not ordered:
        raise ValueError("no group has work")
    if last is None:
        return ordered[0]
    return next((g for g in ordered if g > last), ordered[0])


def apply(ctx: Any, adapter: Adapter | None) -> None:
    """Set the context's adapters to exactly this one (or none) for the next decodes."""
    if adapter is None:
        llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        return
    handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
    llama_cpp.llama_set_adapters_lora(ctx, handles, 1, (ctypes.c_float * 1)(1.0))


class Adapters:
    """The adapter files a model host has loaded, by resolved path (thread-safe)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._loaded: dict[Path, Adapter] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """The file names of the loaded adapters, for `taskloom workers`."""
        return sorted(a.name for a in self._loaded.values())

    def get(self, path: str | Path) -> Adapter:
        """The adapter at `path`, loaded on first use.

        Raises:
            ConfigError: the file is missing, not a GGUF file, or not a LoRA adapter of
                this model.
        """
        resolved = check_adapter(path).resolve()
        with self._lock:
            found = self._loaded.get(resolved)
            if found is None:
                # llama.cpp logs a line per tensor it places: keep them for the error only.
                with listen() as said:
                    handle = llama_cpp.llama_adapter_lora_init(self._model, str(resolved).encode())
                if not handle:
                    why = said.lines[-1].strip() if said.lines else "no reason given"
                    raise ConfigError(
                        f"adapter {resolved} can't be applied to this model ({why}); train"
                        " it again with taskloom learn --adapter against this model"
                    )
                found = self._loaded[resolved] = Adapter(resolved, handle)
        return found

    def close(self) -> None:
        """Free every adapter (after the context, before the model that holds them)."""
        with self._lock:
            for adapter in self._loaded.values():
                llama_cpp.llama_adapter_lora_free(adapter.handle)
            self._loaded.clear()


class _Host(Protocol):
    """What `AdaptedModel` forwards to: `ModelHost`'s calls that take an adapter."""

    @property
    def name(self) -> str: ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        adapter: str | Path | None = None,
    ) -> Completion: ...

    def score_many(
        self,
        calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
        *,
        prefixes: Sequence[str] | None = None,
        adapter: str | Path | None = None,
    ) -> list[tuple[list[float], Completion]]: ...


class AdaptedModel:
    """The host's model with one adapter applied: the ChatModel a job's step runs on,
    with the host's scoring protocols, each call forwarded with `adapter`."""

    def __init__(self, host: _Host, adapter: Adapter) -> None:
        self._host = host
        self.adapter = adapter

    @property
    def name(self) -> str:
        return self._host.name

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion:
        return self._host.complete(
            messages,
            schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
            adapter=self.adapter.path,
        )

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        return self.score_usage(messages, continuations)[0]

    def score_usage(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> tuple[list[float], Completion]:
        return self.score_many([(messages, continuations)])[0]

    def score_many(
        self,
        calls: Sequence[tuple[Sequence[Message], Sequence[str]]],
        *,
        prefixes: Sequence[str] | None = None,
    ) -> list[tuple[list[float], Completion]]:
        return self._host.score_many(calls, prefixes=prefixes, adapter=self.adapter.path)
