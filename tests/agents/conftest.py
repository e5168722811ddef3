"""Fixtures for the agents: a real scripted OpenAI-compatible server and clients of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskloom.chat import OpenAIChatModel
from taskloom.config import Settings
from taskloom.testing.server import Reply, ScriptedServer

TRIAGE_PLAN: dict[str, Any] = {
    "version": 1,
    "goal": "triage",
    "steps": [
        {
            "id": "contact",
            "kind": "extract",
            "inputs": {"text": "$input.email"},
            "output": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
        },
        {
            "id": "intent",
            "kind": "classify",
            "inputs": {"text": "$input.email", "labels": ["refund", "shipping", "other"]},
        },
        {
            "id": "reply",
            "kind": "generate",
            "inputs": {"instruction": "Reply to ${contact.name}", "context": "$intent"},
        },
    ],
    "output": {"intent": "$intent.label", "reply": "$reply.text"},
}


@pytest.fixture
def fast_settings(tmp_path: Any) -> Settings:
    """Settings with short timeouts and backoff, so failure tests stay fast."""
    return Settings(
        home=tmp_path / "home",
        planner_timeout_s=2.0,
        planner_retries=2,
        retry_backoff_s=0.01,
    )


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Factory: a started ScriptedServer on a free port, stopped after the test."""
    started: list[ScriptedServer] = []

    def make(replies: list[Reply] | None = None, **options: Any) -> ScriptedServer:
        server = ScriptedServer(replies or [], **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def llm_for(fast_settings: Settings) -> Callable[..., OpenAIChatModel]:
    """Factory: the real `openai` client (through OpenAIChatModel) against a server."""

    def make(server: ScriptedServer, **options: Any) -> OpenAIChatModel:
        settings = options.pop("settings", fast_settings)
        return OpenAIChatModel(
            base_url=server.url, model="gpt-4o-mini", settings=settings, **options
        )

    return make
