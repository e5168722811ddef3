"""Chat models: the Protocol every model speaks, its implementations, and the fake.

- `ModelHost` (`chat/llama/`): a resident GGUF model on llama.cpp, constrained decoding.
- `OpenAIChatModel` (`chat/openai.py`): any OpenAI-compatible endpoint.
- `ScriptedChatModel` (`chat/scripted.py`): the shipped fake, for tests.

`load_model(settings)` picks the resident model from the settings. The llama.cpp and
OpenAI backends load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from taskloom.chat.base import COPY_KEYWORD, ChatModel, Completion, Message, TokenLogprob
from taskloom.chat.load import SCRIPTED, check_model, load_model
from taskloom.chat.scripted import ScriptedChatModel, sample_for_schema

if TYPE_CHECKING:
    from taskloom.chat.llama.host import ModelHost
    from taskloom.chat.openai import OpenAIChatModel

_LAZY = {"ModelHost": "taskloom.chat.llama.host", "OpenAIChatModel": "taskloom.chat.openai"}

__all__ = [
    "COPY_KEYWORD",
    "SCRIPTED",
    "ChatModel",
    "Completion",
    "Message",
    "ModelHost",
    "OpenAIChatModel",
    "ScriptedChatModel",
    "TokenLogprob",
    "check_model",
    "load_model",
    "sample_for_schema",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'taskloom.chat' has no attribute {name!r}")
    if name == "ModelHost":
        from taskloom.extras import LLAMA, require_local

        require_local(LLAMA)
    return getattr(import_module(_LAZY[name]), name)
