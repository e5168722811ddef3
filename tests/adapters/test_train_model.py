"""A tiny real training run: `taskloom learn --adapter` on the default model writes an
adapter that llama.cpp loads and that changes what the model says."""

from __future__ import annotations

from dataclasses import replace
from hashlib import sha256
from pathlib import Path

import pytest

from taskloom import calibration, labelled
from taskloom.adapters.train import Pair, Recipe, train
from taskloom.api.learn import by_signature, refit_adapters
from taskloom.chat.llama.host import ModelHost
from taskloom.lessons import Lesson
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
    files = sorted((taskloom_home / "examples" / "learned").glob("adapter-extract-*.gguf"))
    for file in files:  # named by content: retrained weights never take a loaded file's name
        assert file.name == f"adapter-extract-{sha256(file.read_bytes()).hexdigest()[:12]}.gguf"
    training = lesson.training
    if lesson.adapter is None:  # it did not beat the step as written: trained once
        [adapter] = files
        assert training["examples"] == lesson.trained_on == 5 and training["steps"] == 15
    else:  # kept; 5 held back set no threshold, so it was trained again on all 10
        assert lesson.refit and lesson.threshold is None and len(files) == 2
        [adapter] = [f for f in files if f.name == lesson.adapter]
        assert training["examples"] == lesson.trained_on == 10 and training["steps"] == 30
        assert "adapter " + adapter.name in out
    assert training["last_loss"] < training["first_loss"]  # it learned the answers
    assert 0 < training["load_seconds"] < training["seconds"]
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


def test_a_kept_adapter_is_trained_again_on_every_answer(
    tmp_path: Path, default_model_path: str
) -> None:
    """The refit on the real path: a new adapter file, trained on the held-back answers
    too, that the lesson then names."""
    groups = by_signature(labelled.read(examples(tmp_path, 8)))
    [(sig, group)] = groups.items()
    first = Lesson(signature=sig, kind="extract", examples=[], method="adapter",
                   adapter="adapter-extract-first.gguf", trained_on=3, held_back=5)  # fmt: skip
    found = {sig: first}
    host = ModelHost(default_model_path, n_ctx=1024)
    try:
        refit_adapters(found, groups, host, tmp_path, Recipe(epochs=1), None)
    finally:
        host.close()
    lesson = found[sig]
    [adapter] = tmp_path.glob("adapter-extract-*.gguf")
    assert lesson.refit and lesson.adapter == adapter.name != first.adapter
    assert lesson.training["examples"] == lesson.trained_on == len(group) == 8
    assert lesson.training["steps"] == 8
