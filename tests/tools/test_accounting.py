"""Accounting of a step: tokens, prompt tokens evaluated, run time, model and cost."""

from __future__ import annotations

import pytest

from taskloom.chat import ScriptedChatModel
from taskloom.config import Settings
from taskloom.step import StepJob, StepStatus
from taskloom.tools import ToolRegistry
from taskloom.tools.execute import execute

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def run(settings: Settings, model: ScriptedChatModel) -> tuple[int, float, str]:
    job = StepJob(run_id="r", step_id="s", kind="extract", inputs={"text": "a b"}, output=SCHEMA)
    result = execute(job, model=lambda: model, tools=ToolRegistry(), settings=settings, worker="w")
    assert result.status == StepStatus.DONE
    assert result.prompt_tokens > 0 and result.completion_tokens > 0 and result.run_ms >= 0
    assert result.prompt_tokens_evaluated == result.prompt_tokens
    return result.prompt_tokens + result.completion_tokens, result.cost_usd, result.model


def test_cost_uses_the_default_slm_price() -> None:
    tokens, cost, model = run(Settings(slm_usd_per_mtok=2.0), ScriptedChatModel(name="tiny"))
    assert model == "tiny"
    assert cost == pytest.approx(tokens * 2.0 / 1e6)


def test_cost_uses_the_models_own_price_when_listed() -> None:
    settings = Settings(slm_usd_per_mtok=2.0, model_usd_per_mtok={"tiny": 10.0})
    tokens, cost, _ = run(settings, ScriptedChatModel(name="tiny"))
    assert cost == pytest.approx(tokens * 10.0 / 1e6)
