"""The chat-model Protocol shared by the SLM runtime, the planner and the router."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, Field

COPY_KEYWORD = "x-copy-from"
"""A schema keyword (top level) holding the text that free-form strings must be spans of.

Chat models that can constrain decoding (the model host) honour it; others ignore it,
and `finish` still drops any value that is not in the text.
"""


class Message(TypedDict):
    """One chat message, as in the OpenAI API."""

    role: str
    content: str


class TokenLogprob(BaseModel):
    """One generated token, and how much the model itself wanted it."""

    text: str = Field(description="the token's text")
    logprob: float = Field(description="its log-probability under the model, no grammar")
    top_logprob: float = Field(
        description="the log-probability of the model's own first choice at that point"
    )


class Completion(BaseModel):
    """What one model call returned, with its accounting."""

    text: str = Field(description="the raw text the model produced")
    model: str = Field(description="the model's name")
    prompt_tokens: int = Field(0, description="tokens in the whole prompt")
    completion_tokens: int = Field(0, description="tokens generated")
    prompt_tokens_evaluated: int | None = Field(
        None, description="prompt tokens actually evaluated (fewer when a prefix was reused)"
    )
    run_ms: float = Field(0.0, description="wall time of the call")
    grammar_rejections: int | None = Field(
        None, description="sampled tokens the grammar rejected (local constrained decoding)"
    )
    full_masks: int | None = Field(
        None, description="tokens for which the whole vocabulary was masked by the grammar"
    )
    tokens: list[TokenLogprob] | None = Field(
        None, description="each generated token with its log-probabilities, where known"
    )
    decodes: int | None = Field(
        None,
        description="model evaluations the generation took (local model; fewer than"
        " completion_tokens when drafted tokens were accepted)",
    )
    drafted: int | None = Field(None, description="tokens drafted for verification")
    draft_accepted: int | None = Field(None, description="drafted tokens the model agreed with")


@runtime_checkable
class ChatModel(Protocol):
    """A model that completes chats, optionally constrained to a JSON schema."""

    @property
    def name(self) -> str:
        """The model's name, as recorded in step results."""
        ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion:
        """Complete the chat; with `schema`, the text is JSON that conforms to it."""
        ...

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        """The log-probability of each continuation as the start of the reply."""
        ...


@runtime_checkable
class Adapts(Protocol):
    """A chat model that can apply a LoRA adapter file (the model host)."""

    def adapted(self, path: str) -> ChatModel:
        """This model with the adapter applied to every call.

        Raises:
            ConfigError: the adapter can't be loaded.
        """
        ...
