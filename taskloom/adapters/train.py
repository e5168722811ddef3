"""Train a LoRA adapter on training pairs, on the CPU or a GPU (the `learn` extra).

The base is the served GGUF model itself: transformers loads the GGUF file, dequantised
to float32, so the adapter learns on top of the very weights the workers run. Only the
answer's tokens carry the loss, and the output layer (262k rows for Gemma 3) is applied
to those positions only.

Two things keep a pass cheap on a CPU. The lowest layers (`Recipe.frozen`) get no
adapter, so what they compute for a pair never changes: it is computed once, kept, and
every pass starts above them, with the gradient stopping there too. And where the
hardware has native bfloat16, the passes compute in it (the adapter stays float32).

The recipe: rank 8, alpha 16, every attention and MLP projection of the layers above
the lowest 6, AdamW at 1e-3 with a short warm-up and a linear decay, gradients clipped
to 1, three passes (benchmarks/bench_adapter.py measures it).
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

from taskloom.adapters.file import GGUF_NAMES, architecture, gguf_name
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
    frozen: int = 6
    """The lowest decoder layers left without an adapter. What they compute for a pair
    never changes, so it is computed once and reused by every pass, and the gradient
    stops above them: the training's cost falls with each layer frozen."""
    bf16: bool | None = None
    """Compute in bfloat16 (the adapter's weights stay float32); None: where the
    hardware has native bfloat16 (a CPU with AVX512-BF16 or AMX, most GPUs)."""


@dataclass(frozen=True)
class Trained:
    """An adapter's weights (GGUF tensor name → float32 array), and how training went."""

    weights: dict[str, Any]
    alpha: int
    arch: str
    steps: int
    seconds: float
    load_seconds: float
    first_loss: float
    last_loss: float
    device: str
    """Where it trained, and in bfloat16 if it did: "cpu", "cuda, bfloat16"."""


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
    loaded = time.perf_counter()
    bf16 = _native_bf16(device) if recipe.bf16 is None else recipe.bf16
    body, head = base.model, base.lm_head  # the decoder stack, and the output layer
    layers = body.layers
    frozen = min(recipe.frozen, len(layers) - 1)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(
            base,
            LoraConfig(
                r=recipe.rank,
                lora_alpha=recipe.alpha,
                lora_dropout=0.0,
                target_modules=list(GGUF_NAMES),
                layers_to_transform=list(range(frozen, len(layers))) if frozen else None,
            ),
        ).to(device)
    inputs = _frozen_outputs(body, pairs, frozen, device)
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
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                hidden = body(**inputs(i, tokens)).last_hidden_state[0]
                start = len(pair.prompt)
                # the position before each answer token predicts it
                logits = head(hidden[start - 1 : tokens.shape[1] - 1])
            loss = torch.nn.functional.cross_entropy(logits.float(), tokens[0, start:])
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
        load_seconds=loaded - started,
        first_loss=_mean(losses[: len(pairs)]),
        last_loss=_mean(losses[-len(pairs) :]),
        device=f"{device}, bfloat16" if bf16 else device,
    )


def _native_bf16(device: str) -> bool:
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own probes
    return any(getattr(cpu, check, lambda: False)() for check in checks)


def _frozen_outputs(
    body: Any, pairs: Sequence[Pair], frozen: int, device: str
) -> Callable[[int, Any], dict[str, Any]]:
    """The decoder's keyword arguments for pair i: its tokens, or, with layers frozen,
    what the frozen layers output for it (computed here, once), with those layers
    replaced by a pass-through so that the decoder starts where they ended."""
    if not frozen:
        return lambda i, tokens: {"input_ids": tokens}
    import torch

    outputs: list[Any] = []

    def keep(module: Any, args: Any, output: Any) -> None:
        outputs.append(output[0] if isinstance(output, tuple) else output)
        raise _Enough

    hook = body.layers[frozen - 1].register_forward_hook(keep)
    with torch.no_grad():
        for pair in pairs:
            with contextlib.suppress(_Enough):
                body(input_ids=torch.tensor([pair.prompt + pair.answer], device=device))
    hook.remove()
    skip = _pass_through()
    for at in range(frozen):
        body.layers[at] = skip
    return lambda i, tokens: {"inputs_embeds": outputs[i]}


class _Enough(Exception):
    """Stops a forward pass once the frozen layers have given their output."""


def _pass_through() -> Any:
    import torch

    class PassThrough(torch.nn.Module):
        def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
            return hidden_states

    return PassThrough()


def _load(path: Path) -> tuple[Any, str]:
    """The GGUF model as a float32 transformers model, and its llama.cpp architecture."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    arch = architecture(path)
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
