"""Train a LoRA adapter on training pairs, on the CPU or a GPU (the `learn` extra).

The base is the served GGUF model itself: transformers loads the GGUF file, dequantised
to float32, so the adapter learns on top of the very weights the workers run. Only the
answer's tokens carry the loss, and the output layer (262k rows for Gemma 3) is applied
to those positions only, which keeps a step of a 270M model near a second on 2 cores.

The recipe (rank 8, alpha 16, every attention and MLP projection, AdamW at 1e-3 with a
short warm-up and a linear decay, gradients clipped to 1, three passes) is the one that
took the default model's extraction fields from 37% to 84% right, unreviewed, on the
test half of benchmarks/data/eval_extract.json after learning its 50 dev answers.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from taskloom.adapters.file import GGUF_NAMES, gguf_name
from taskloom.errors import ConfigError, MissingExtraError

LEARN_EXTRA = 'pip install "taskloom[learn]"'


@dataclass(frozen=True)
class Pair:
    """One training pair, as token ids of the served model: the prompt a step sends and
    the answer it should get (`lessons.training_pairs`)."""

    prompt: list[int]
    answer: list[int]


@dataclass(frozen=True)
class Recipe:
    """How an adapter is trained (module doc)."""

    rank: int = 8
    alpha: int = 16
    epochs: int = 3
    lr: float = 1e-3
    warmup: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Trained:
    """An adapter's weights (GGUF tensor name → float32 array), and how training went."""

    weights: dict[str, Any]
    alpha: int
    arch: str
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    device: str


def check_extra() -> None:
    """Fail early, without importing, unless the `learn` extra is installed.

    Raises:
        MissingExtraError: torch, transformers, peft or gguf is missing.
    """
    for module in ("torch", "transformers", "peft", "gguf"):
        if find_spec(module) is None:
            raise MissingExtraError(
                f"training an adapter needs {module}, which is not installed: {LEARN_EXTRA}"
            )


def train(
    pairs: Sequence[Pair],
    *,
    model_path: str | Path,
    recipe: Recipe = Recipe(),
    progress: Callable[[int, int], None] | None = None,
) -> Trained:
    """Train a LoRA on the pairs over the GGUF model at `model_path` (module doc).

    `progress(done, total)` is told after each optimiser step.

    Raises:
        MissingExtraError: the `learn` extra is not installed.
        ConfigError: transformers can't load the model.
    """
    check_extra()
    import torch
    from peft import LoraConfig, get_peft_model

    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    base, arch = _load(Path(model_path))
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(
            base,
            LoraConfig(
                r=recipe.rank,
                lora_alpha=recipe.alpha,
                lora_dropout=0.0,
                target_modules=list(GGUF_NAMES),
            ),
        ).to(device)
    body, head = base.model, base.lm_head  # the decoder stack, and the output layer
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=recipe.lr)
    total = recipe.epochs * len(pairs)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min(1.0, (step + 1) / recipe.warmup) * max(0.05, 1 - step / total),
    )
    order = list(range(len(pairs)))
    shuffle = random.Random(recipe.seed).shuffle
    losses: list[float] = []
    model.train()
    for _ in range(recipe.epochs):
        shuffle(order)
        for i in order:
            pair = pairs[i]
            tokens = torch.tensor([pair.prompt + pair.answer], device=device)
            hidden = body(input_ids=tokens).last_hidden_state[0]
            start = len(pair.prompt)
            # the position before each answer token predicts it
            logits = head(hidden[start - 1 : tokens.shape[1] - 1])
            loss = torch.nn.functional.cross_entropy(logits, tokens[0, start:])
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(float(loss.item()))
            if progress is not None:
                progress(len(losses), total)
    weights = {
        gguf_name(key): value.detach().float().cpu().numpy()
        for key, value in model.state_dict().items()
        if ".lora_" in key
    }
    return Trained(
        weights=weights,
        alpha=recipe.alpha,
        arch=arch,
        steps=len(losses),
        seconds=time.perf_counter() - started,
        first_loss=_mean(losses[: len(pairs)]),
        last_loss=_mean(losses[-len(pairs) :]),
        device=device,
    )


def _load(path: Path) -> tuple[Any, str]:
    """The GGUF model as a float32 transformers model, and its llama.cpp architecture."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        # its loader draws its own progress bar on stderr, over the caller's
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32
            )
    except (ValueError, KeyError, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"can't train an adapter for {path.name} ({arch}): transformers can't load it ({why})"
        ) from e
    return model, arch


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / max(len(values), 1), 4)
