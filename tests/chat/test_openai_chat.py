"""OpenAIChatModel: the real openai client against a real local HTTP server."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from taskloom.chat.openai import OpenAIChatModel, extract_json
from taskloom.config import Settings
from taskloom.errors import ConfigError, EndpointUnavailableError
from taskloom.testing.server import Reply, ScriptedServer

Server = Callable[..., ScriptedServer]
Llm = Callable[..., OpenAIChatModel]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_json_schema_response_format_and_usage(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(text={"a": 1})])
    c = llm_for(server).complete([{"role": "user", "content": "hi"}], schema=SCHEMA)
    assert json.loads(c.text) == {"a": 1}
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    assert server.requests[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert c.prompt_tokens > 0 and c.completion_tokens > 0 and c.model == "gpt-4o-mini"


def test_degrades_to_json_object_with_schema_when_json_schema_is_rejected(
    scripted_server: Server, llm_for: Llm
) -> None:
    server = scripted_server([Reply(text='Sure! ```json\n{"a": 2}\n```'), Reply(text={"a": 3})])
    server.rejects_json_schema = True
    model = llm_for(server)
    assert json.loads(model.complete([{"role": "user", "content": "x"}], schema=SCHEMA).text) == {
        "a": 2
    }
    model.complete([{"role": "user", "content": "x"}], schema=SCHEMA)
    kinds = [r.get("response_format", {}).get("type") for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]  # remembered
    assert server.requests[1]["response_format"]["schema"] == SCHEMA


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_by_the_sdk_then_succeed(
    scripted_server: Server, llm_for: Llm, status: int
) -> None:
    server = scripted_server([Reply(status=status), Reply(status=status), Reply(text="fine")])
    assert llm_for(server).complete([{"role": "user", "content": "x"}]).text == "fine"
    assert len(server.requests) == 3


def test_persistent_500_raises_endpoint_unavailable_naming_it(
    scripted_server: Server, llm_for: Llm
) -> None:
    server = scripted_server([Reply(status=500)] * 3)
    with pytest.raises(EndpointUnavailableError) as e:
        llm_for(server).complete([{"role": "user", "content": "x"}])
    assert server.url in str(e.value) and "HTTP 500" in str(e.value) and "3 attempt" in str(e.value)
    assert e.value.exit_code == 3
    assert len(server.requests) == 3


def test_a_429_waits_as_long_as_its_retry_after_says(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(status=429, retry_after_s=1.5), Reply(text="fine")])
    assert llm_for(server).complete([{"role": "user", "content": "x"}]).text == "fine"
    assert len(server.requests) == 2
    # The SDK's own first backoff is at most 0.5 s: a gap of 1.5 s or more is Retry-After's.
    # A lower bound only, so a slow machine can't fail it.
    assert server.arrived_s[1] - server.arrived_s[0] >= 1.5


def test_persistent_429_with_retry_after_maps_to_exit_3(
    scripted_server: Server, llm_for: Llm
) -> None:
    server = scripted_server([Reply(status=429, retry_after_s=0.1)] * 3)
    with pytest.raises(EndpointUnavailableError, match="HTTP 429") as e:
        llm_for(server).complete([{"role": "user", "content": "x"}])
    assert e.value.exit_code == 3 and len(server.requests) == 3  # planner_retries = 2


def test_a_probe_of_response_format_is_retried_after_a_503(
    scripted_server: Server, llm_for: Llm
) -> None:
    server = scripted_server([Reply(status=503), Reply(status=503), Reply(text={"a": 4})])
    c = llm_for(server).complete([{"role": "user", "content": "x"}], schema=SCHEMA)
    assert json.loads(c.text) == {"a": 4}
    kinds = [r.get("response_format", {}).get("type") for r in server.requests]
    assert kinds == ["json_schema"] * 3  # a 503 is not a rejection: the same format again


def test_llama_servers_500_for_response_format_degrades_without_retries(
    scripted_server: Server, llm_for: Llm
) -> None:
    rejected = Reply(status=500, text="response_format: input should be 'text' or 'json_object'")
    server = scripted_server([rejected, Reply(text={"a": 5})])
    c = llm_for(server).complete([{"role": "user", "content": "x"}], schema=SCHEMA)
    assert json.loads(c.text) == {"a": 5}
    kinds = [r.get("response_format", {}).get("type") for r in server.requests]
    assert kinds == ["json_schema", "json_object"]  # the SDK did not retry the rejection


def test_timeouts_are_bounded(scripted_server: Server, fast_settings: Settings) -> None:
    server = scripted_server([Reply(stall_s=1.0)] * 2)
    settings = fast_settings.model_copy(update={"planner_timeout_s": 0.2, "planner_retries": 1})
    model = OpenAIChatModel(base_url=server.url, settings=settings)
    with pytest.raises(EndpointUnavailableError, match="timed out") as e:
        model.complete([{"role": "user", "content": "x"}])
    assert e.value.exit_code == 3
    assert len(server.requests) == 2  # the SDK's one retry, each cut off at the timeout


def test_unreachable_endpoint(fast_settings: Settings) -> None:
    model = OpenAIChatModel(base_url="http://127.0.0.1:9/v1", settings=fast_settings)
    with pytest.raises(EndpointUnavailableError, match=r"127\.0\.0\.1:9.*connection failed"):
        model.complete([{"role": "user", "content": "x"}])


def test_404_model_is_a_config_error(scripted_server: Server, llm_for: Llm) -> None:
    server = scripted_server([Reply(status=404)])
    with pytest.raises(ConfigError, match="TASKLOOM_PLANNER_MODEL"):
        llm_for(server).complete([{"role": "user", "content": "x"}])


def test_streaming_yields_chunks_then_accounting(scripted_server: Server, llm_for: Llm) -> None:
    text = json.dumps({"a": 1, "b": "x" * 40})
    server = scripted_server([Reply(text=text)], tokens_per_s=400)
    streamed = llm_for(server).stream([{"role": "user", "content": "x"}], schema=SCHEMA)
    chunks = list(streamed.chunks)
    assert len(chunks) > 5 and "".join(chunks) == text
    assert streamed.completion is not None and streamed.completion.completion_tokens == len(chunks)
    assert server.requests[0]["stream"] is True


def test_score_reads_top_logprobs(scripted_server: Server, llm_for: Llm) -> None:
    logprobs = [
        (' {"label": "', -0.01, []),
        ("refund", -0.2, [("refund", -0.2), ("other", -1.8)]),
        ('"}', -0.01, []),
    ]
    server = scripted_server([Reply(text=' {"label": "refund"}', logprobs=logprobs)])
    scores = llm_for(server).score(
        [{"role": "user", "content": "x"}], [' {"label": "refund"}', ' {"label": "other"}']
    )
    assert scores[0] == pytest.approx(-0.22)
    assert scores[1] == pytest.approx(-1.81)
    assert server.requests[0]["logprobs"] is True


def test_score_without_logprobs_favours_what_was_written(
    scripted_server: Server, llm_for: Llm
) -> None:
    server = scripted_server([Reply(text='{"label": "b"}')])
    scores = llm_for(server).score(
        [{"role": "user", "content": "x"}], ['{"label": "a"}', ' {"label": "b"}']
    )
    assert math.exp(scores[1]) == pytest.approx(0.9)


def test_prices() -> None:
    prices = Settings()
    assert prices.price_per_mtok("gpt-4o-mini-2024-07-18", is_llm=True) == (0.15, 0.60)
    assert prices.price_per_mtok("gpt-4o-2024", is_llm=True) == (2.50, 10.00)
    assert prices.price_per_mtok("some-local-model", is_llm=True) == (0.50, 1.50)
    settings = Settings(llm_usd_per_mtok=(1.0, 2.0))
    assert settings.cost_usd("gpt-4o", 1_000_000, 500_000, is_llm=True) == pytest.approx(2.0)


def test_extract_json() -> None:
    assert extract_json('Here: {"a": [1, 2]} done') == '{"a": [1, 2]}'
    assert extract_json("```json\n[1]\n```") == "[1]"
    assert extract_json("no json here") == "no json here"
    assert extract_json('{broken {"a": 1}') == '{"a": 1}'
