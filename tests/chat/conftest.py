"""The scripted OpenAI-compatible server fixtures, shared with the agents' tests."""

from tests.agents.conftest import fast_settings, llm_for, scripted_server

__all__ = ["fast_settings", "llm_for", "scripted_server"]
