"""Chat models: the Protocol every model speaks, and the scripted fake for tests.

Implementations: `taskloom.workers.host.ModelHost` (llama-cpp, resident GGUF),
`taskloom.agents.openai_chat` (any OpenAI-compatible endpoint) and
`ScriptedChatModel` (a fake that replays or computes replies, for tests).
"""

from taskloom.chat.base import ChatModel, Completion, Message
from taskloom.chat.scripted import ScriptedChatModel, sample_for_schema

__all__ = ["ChatModel", "Completion", "Message", "ScriptedChatModel", "sample_for_schema"]
