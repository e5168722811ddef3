"""A tiny real training run: `taskloom learn --adapter` on the default model writes an
adapter that llama.cpp loads and that changes what the model says."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    training = lesson.training
    assert training["examples"] == lesson.trained_on == 5 and training["steps"] == 15
    assert training["last_loss"] < training["first_loss"]  # it learned the five answers
    assert lesson.adapter in (adapter.name, None)  # kept only if it beat the step as written
    assert ("adapter " + adapter.name in out) == (lesson.adapter is not None)

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
        assert host.score(messages, reply) == plain  # and leave the base model as it was
    finally:
        host.close()
