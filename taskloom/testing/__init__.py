"""Fakes to test against: the scripted OpenAI-compatible HTTP server.

The scripted chat model itself is `taskloom.chat.ScriptedChatModel`, and an in-memory
run store is `taskloom.workflows.store.MemoryRunStore`.
"""

from taskloom.testing.server import Reply, ScriptedServer

__all__ = ["Reply", "ScriptedServer"]
