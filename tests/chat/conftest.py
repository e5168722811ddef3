"""The scripted OpenAI-compatible server fixtures, shared with the agents' tests, and a
counter of `llama_decode` calls."""

from collections.abc import Callable
from typing import Any

import llama_cpp
import pytest

from tests.agents.conftest import fast_settings, llm_for, scripted_server

__all__ = ["decodes", "fast_settings", "llm_for", "scripted_server"]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts `llama_decode` calls from here on; call it to read the count, which
    reading resets."""
    count = 0
    real_decode = llama_cpp.llama_decode

    def counting(ctx: Any, batch: Any) -> int:
        nonlocal count
        count += 1
        return int(real_decode(ctx, batch))

    def read() -> int:
        nonlocal count
        seen, count = count, 0
        return seen

    monkeypatch.setattr(llama_cpp, "llama_decode", counting)
    return read
