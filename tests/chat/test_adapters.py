"""LoRA adapters: which group a batch step decodes, and which model a job's step runs on.

No model needed here; the real-model tests are in test_adapters_model.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloom.chat import ChatModel, ScriptedChatModel
from taskloom.chat.llama.adapters import BASE, Adapter, Adapters, key, next_group
from taskloom.config import Settings
from taskloom.errors import ConfigError
from taskloom.step import StepJob, StepStatus
from taskloom.tools import ToolRegistry
from taskloom.tools.execute import execute, step_model


def test_groups_take_turns_in_sorted_order_and_wrap_round() -> None:
    groups = {BASE, "/a.gguf", "/b.gguf"}
    order, last = [], None
    for _ in range(6):
        last = next_group(groups, last)
        order.append(last)
    assert order == [BASE, "/a.gguf", "/b.gguf", BASE, "/a.gguf", "/b.gguf"]


def test_a_group_that_runs_out_of_work_is_skipped_and_a_lone_group_keeps_decoding() -> None:
    assert next_group({BASE, "/b.gguf"}, "/a.gguf") == "/b.gguf"
    assert next_group({"/a.gguf"}, "/a.gguf") == "/a.gguf"
    assert next_group({BASE}, None) == BASE
    with pytest.raises(ValueError):
        next_group(set(), None)


def test_the_base_model_and_each_adapter_are_distinct_groups() -> None:
    a = Adapter(Path("/x/a.gguf"), handle=None)
    assert key(None) == BASE
    assert key(a) == "/x/a.gguf" != key(Adapter(Path("/x/b.gguf"), handle=None))


def test_a_missing_or_non_gguf_adapter_is_one_config_error_line(tmp_path: Path) -> None:
    adapters = Adapters(model=None)  # the file is checked before llama.cpp sees it
    with pytest.raises(ConfigError, match="can't be read") as missing:
        adapters.get(tmp_path / "nope.gguf")
    (tmp_path / "junk.gguf").write_text("not a model")
    with pytest.raises(ConfigError, match="not a GGUF file") as junk:
        adapters.get(tmp_path / "junk.gguf")
    for e in (missing, junk):
        assert "\n" not in str(e.value) and "taskloom learn" in str(e.value)
    assert adapters.names == []


def job(adapter: str | None) -> StepJob:
    return StepJob(
        run_id="r1",
        step_id="s1",
        kind="classify",
        inputs={"text": "I love it", "labels": ["happy", "sad"]},
        adapter=adapter,
    )


def test_a_job_without_an_adapter_runs_on_the_workers_model() -> None:
    model = ScriptedChatModel()
    assert step_model(job(None), model) is model


class Adaptable(ScriptedChatModel):
    """A scripted model that records the adapter asked for (as ModelHost.adapted would)."""

    asked: list[str]

    def adapted(self, path: str) -> ChatModel:
        self.asked = [*getattr(self, "asked", []), path]
        return self


def test_a_job_with_an_adapter_runs_on_the_adapted_model() -> None:
    model = Adaptable()
    assert step_model(job("/lessons/extract.gguf"), model) is model
    assert model.asked == ["/lessons/extract.gguf"]


def test_a_model_that_cannot_apply_adapters_fails_the_step_with_a_config_error() -> None:
    # Running without the adapter would silently drop what was learned.
    with pytest.raises(ConfigError, match="can't apply LoRA adapters") as e:
        step_model(job("/lessons/extract.gguf"), ScriptedChatModel())
    assert "\n" not in str(e.value)
    result = execute(
        job("/lessons/extract.gguf"),
        model=ScriptedChatModel,
        tools=ToolRegistry(),
        settings=Settings(),
        worker="w1",
    )
    assert result.status is StepStatus.FAILED
    assert result.error is not None and result.error.type == "ConfigError"
    assert not result.error.is_retryable


def test_a_done_step_names_its_adapter_in_meta() -> None:
    result = execute(
        job("/lessons/extract.gguf"),
        model=Adaptable,
        tools=ToolRegistry(),
        settings=Settings(),
        worker="w1",
    )
    assert result.status is StepStatus.DONE, result.error
    assert result.meta["adapter"] == "extract.gguf"
    plain = execute(
        job(None), model=ScriptedChatModel, tools=ToolRegistry(), settings=Settings(), worker="w1"
    )
    assert "adapter" not in plain.meta
