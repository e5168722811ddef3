"""A tiny real training run: `taskloom learn --adapter` on the default model writes an
adapter that llama.cpp loads and that changes what the model says."""

from __future__ import annotations

from dataclasses import replace
from hashlib import sha256
from pathlib import Path

import pytest

from taskloom import calibration
from taskloom.adapters.train import Pair, Recipe, train
from taskloom.chat.llama.host import ModelHost
from tests.test_cli import cli
from tests.test_cli_learn import examples, lessons

pytest.importorskip("torch")  # the learn extra

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_learn_adapter_trains_writes_and_the_adapter_changes_the_model(
    tmp_path: Path,
    taskloom_home: Path,
    default_model_path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = cli(capsys, "learn", "--examples", examples(tmp_path, 10), "--adapter")
    assert code == 0, err
    [lesson] = lessons(taskloom_home)
    [adapter] = (taskloom_home / "examples" / "learned").glob("adapter-extract-*.gguf")
    # named by its content, so retrained weights never take a file workers have loaded
    assert adapter.name == f"adapter-extract-{sha256(adapter.read_bytes()).hexdigest()[:12]}.gguf"
    training = lesson.training
    assert training["examples"] == lesson.trained_on == 5 and training["steps"] == 15
    assert training["last_loss"] < training["first_loss"]  # it learned the five answers
    assert 0 < training["load_seconds"] < training["seconds"]
    assert lesson.adapter in (adapter.name, None)  # kept only if it beat the step as written
    assert ("adapter " + adapter.name in out) == (lesson.adapter is not None)
    # 5 held back are too few for its own weights: the calibration's adapted ones rank it
    shipped = calibration.load().of("extract").adapted_weights
    assert shipped is not None
    assert lesson.weights == (shipped if lesson.adapter else None)

    host = ModelHost(default_model_path, n_ctx=1024)
    try:
        messages = [
            {"role": "system", "content": "Extract the person's name as JSON."},
            {"role": "user", "content": "Hi, Nora Berg here: my order A-2001 is late."},
        ]
        reply = ['{"person": "Nora Berg"}']
        plain = host.score(messages, reply)
        adapted = host.adapted(adapter).score(messages, reply)
        assert adapted != plain  # the trained weights reach the model's output
        assert host.adapters == [adapter.name]
        # and leave the base model as it was (up to the cached prompt's decode shape)
        assert host.score(messages, reply) == pytest.approx(plain, abs=0.1)
    finally:
        host.close()


def test_frozen_layers_are_computed_once_and_change_nothing_but_the_cost(
    default_model_path: str,
) -> None:
    host = ModelHost(default_model_path, n_ctx=1024)
    try:
        messages = [
            {"role": "system", "content": "Extract the order id as JSON."},
            {"role": "user", "content": "Order A-2001 never came. Nora"},
        ]
        pairs = [Pair(host.prompt_tokens(messages), host.tokenize('{"order_id": "A-2001"}'))]
    finally:
        host.close()
    # with no learning rate the adapter stays zero: the losses are the base model's
    still = Recipe(epochs=1, lr=0.0, bf16=False)
    whole = train(pairs, model_path=default_model_path, recipe=replace(still, frozen=0))
    cached = train(pairs, model_path=default_model_path, recipe=replace(still, frozen=6))
    assert cached.first_loss == pytest.approx(whole.first_loss, abs=1e-3)
    assert whole.first_loss > 0
    assert {name.split(".")[1] for name in whole.weights} == {str(n) for n in range(18)}
    assert {name.split(".")[1] for name in cached.weights} == {str(n) for n in range(6, 18)}
