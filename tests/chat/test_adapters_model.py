"""LoRA adapters on the real default model: applied per call, exact, and never leaking.

Every test here is marked `model`. The adapter is random (seeded) and strong enough to
change greedy output; it is written with `write_lora`, as `taskloom learn` writes one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taskloom.adapters.file import write_lora
from taskloom.chat import ChatModel, Completion
from taskloom.chat.llama.host import ModelHost
from taskloom.config import Settings
from taskloom.errors import ConfigError
from taskloom.step import StepJob, StepResult, StepStatus
from taskloom.tools import ToolRegistry, run_task
from taskloom.tools.execute import execute
from tests.chat.agreement import FIELDS_AGREE, fields_agreeing
from tests.chat.test_batch import CITY, together
from tests.chat.test_host import chat

pytestmark = pytest.mark.model

RANK = 4
SCALE = 0.1  # changes the answers, still JSON with clear winners (no near-ties to flip)
TEXT = "I moved from Lisbon to Porto last spring and I love it here."
TEXTS = [TEXT, "Greetings from Oslo, where it snows all winter.", "Write to our office in Berlin."]


@pytest.fixture(scope="module")
def adapter(default_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on every block's attn_q and ffn_down."""
    import gguf

    rng = np.random.default_rng(7)
    weights = {}
    for tensor in gguf.GGUFReader(default_model_path).tensors:
        if tensor.name.endswith(("attn_q.weight", "ffn_down.weight")):
            n_in, n_out = (int(n) for n in tensor.shape[:2])  # GGUF order: ne[0] is in
            a = rng.normal(0, SCALE, (RANK, n_in)).astype(np.float32)
            b = rng.normal(0, SCALE, (n_out, RANK)).astype(np.float32)
            weights[f"{tensor.name}.lora_a"], weights[f"{tensor.name}.lora_b"] = a, b
    path = tmp_path_factory.mktemp("lora") / "random.gguf"
    return write_lora(weights, path, alpha=RANK, arch="gemma3", meta={"base": "test"})


@pytest.fixture(scope="module")
def batched(default_model_path: str) -> Iterator[ModelHost]:
    host = ModelHost(default_model_path, n_ctx=2048, concurrency=4)
    yield host
    host.close()


def city(model: ChatModel, text: str = TEXT) -> Completion:
    return model.complete(chat(text), schema=CITY, max_tokens=16)


def test_an_adapted_completion_differs_repeats_and_leaves_the_base_as_it_was(
    model_host: ModelHost, adapter: Path
) -> None:
    model_host.reset_cache()
    base = city(model_host)
    adapted = model_host.adapted(adapter)
    first, again = city(adapted), city(adapted)
    after = city(model_host)
    assert json.loads(first.text) != json.loads(base.text) == {"city": "Porto"}
    assert first.prompt_tokens_evaluated == first.prompt_tokens  # none of the base's KV
    assert again.text == first.text
    assert again.prompt_tokens_evaluated == 1  # its own cached prompt, reused
    assert after.text == base.text
    assert after.prompt_tokens_evaluated == 1  # the base's cache, kept apart
    assert "random.gguf" in model_host.adapters


def test_a_batch_decodes_adapted_and_base_calls_as_the_sequential_host_does(
    model_host: ModelHost, batched: ModelHost, adapter: Path
) -> None:
    # Six calls on four sequences: the adapter groups take turns, and calls queue.
    calls = [(text, lora) for text in TEXTS for lora in (None, adapter)]
    references = [model_host if lora is None else model_host.adapted(lora) for _, lora in calls]
    alone = [city(model, text).text for model, (text, _) in zip(references, calls, strict=True)]
    together_ = together(
        *[
            lambda t=t, lora=lora: city(batched.adapted(lora) if lora else batched, t)
            for t, lora in calls
        ]
    )
    # Not byte-exact: the batch decodes in other shapes, so a near-tie may flip (agreement).
    replies = [c.text for c in together_]
    assert fields_agreeing(replies, alone) >= FIELDS_AGREE
    # A mix-up of adapters gives the other model's answer to the text, which a near-tie
    # does not: the adapter changes every answer.
    for i, reply in enumerate(replies):
        assert json.loads(alone[i]) != json.loads(alone[i ^ 1])  # i ^ 1: the same text
        assert json.loads(reply) != json.loads(alone[i ^ 1])


def test_scoring_applies_the_adapter_in_both_hosts(
    model_host: ModelHost, batched: ModelHost, adapter: Path
) -> None:
    options = ['{"city": "Porto"}', '{"city": null}']
    base = model_host.score(chat(TEXT), options)
    adapted = model_host.adapted(adapter).score(chat(TEXT), options)
    in_batch = batched.adapted(adapter).score(chat(TEXT), options)
    assert all(abs(a - b) > 5 for a, b in zip(adapted, base, strict=True))
    # Within 5%: the adapter's larger activations amplify the batch's rounding (~1 nat).
    assert in_batch == pytest.approx(adapted, rel=0.05)
    assert model_host.score(chat(TEXT), options) == pytest.approx(base, abs=0.1)


def test_a_file_that_is_not_an_adapter_of_this_model_is_one_config_error_line(
    model_host: ModelHost, tmp_path: Path, default_model_path: str
) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(64))
    for path in (garbage, Path(default_model_path)):  # the base model is no adapter
        with pytest.raises(ConfigError, match="can't be applied to this model") as e:
            model_host.adapted(path)
        assert "\n" not in str(e.value)


def test_a_job_with_an_adapter_runs_adapted_and_says_so(
    model_host: ModelHost, adapter: Path
) -> None:
    def run(lora: str | None) -> StepResult:
        job = StepJob(run_id="r1", step_id="s1", kind="extract", inputs={"text": TEXT}, output=CITY)
        return execute(
            job.model_copy(update={"adapter": lora}),
            model=lambda: model_host,
            tools=ToolRegistry(),
            settings=Settings(),
            worker="w1",
        )

    with_adapter, without = run(str(adapter)), run(None)
    assert with_adapter.status is StepStatus.DONE, with_adapter.error
    assert with_adapter.meta["adapter"] == "random.gguf"
    assert "adapter" not in without.meta
    expected = run_task("extract", {"text": TEXT}, output=CITY, model=model_host.adapted(adapter))
    assert with_adapter.value == expected.value != without.value
