"""llama.cpp's LoRA adapter GGUF: what `taskloom learn --adapter` writes, workers load.

An adapter file holds, for each adapted weight `blk.N.<name>.weight` of the base model,
two tensors `….lora_a` (rank × in) and `….lora_b` (out × rank), with the keys
`general.type = "adapter"`, `adapter.type = "lora"` and `adapter.lora.alpha`; llama.cpp
adds `alpha / rank · B·A·x` to the weight's output (src/llama-adapter.cpp).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskloom.errors import ConfigError

GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
"""Hugging Face's projection names → llama.cpp's tensor names (Llama-style blocks)."""

_PEFT_KEY = re.compile(r"layers\.(\d+)\.\w+\.(\w+)\.lora_([AB])\b")


def gguf_name(peft_key: str) -> str:
    """`…layers.3.self_attn.q_proj.lora_A.default.weight` → `blk.3.attn_q.weight.lora_a`."""
    found = _PEFT_KEY.search(peft_key)
    if found is None or found[2] not in GGUF_NAMES:
        raise ValueError(f"not a LoRA weight of a known projection: {peft_key}")
    return f"blk.{found[1]}.{GGUF_NAMES[found[2]]}.weight.lora_{found[3].lower()}"


def write_lora(
    weights: Mapping[str, Any],
    path: str | Path,
    *,
    alpha: float,
    arch: str,
    meta: Mapping[str, str],
    content_named: bool = False,
) -> Path:
    """Write LoRA weights (GGUF tensor name → float32 numpy array) as an adapter file.

    `arch`: the base model's `general.architecture`, which llama.cpp checks on load.
    `meta`: strings kept under `taskloom.*` (the base model, the signatures it learned).
    `content_named`: the file's name ends in the first 12 hex digits of its SHA-256
    (`adapter-extract.gguf` → `adapter-extract-3f2a9c1b0d4e.gguf`). Workers load an
    adapter once per path, so new weights must never take an old file's name.
    The file is written beside its final name and renamed, so a worker never reads half.
    """
    import gguf  # the `learn` extra

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for key, value in meta.items():
        writer.add_string(f"taskloom.{key}", value)
    for name, array in sorted(weights.items()):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if content_named:
        with tmp.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
        path = path.with_name(f"{path.stem}-{digest}{path.suffix}")
    tmp.replace(path)
    return path


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def architecture(model_path: str | Path) -> str:
    """The model file's `general.architecture`, which its adapters must name.

    Read off the header alone: gguf's reader parses every key first, the 262k-token
    vocabulary among them, which takes seconds.

    Raises:
        ConfigError: the file is not a GGUF file or names no architecture.
    """
    path = Path(model_path)
    try:
        return _architecture(path)
    except (OSError, struct.error, KeyError, UnicodeDecodeError) as e:
        raise ConfigError(f"can't read the architecture of {path} ({e})") from e


def _architecture(path: Path) -> str:
    with path.open("rb") as f:

        def number(fmt: str) -> int:
            (value,) = struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))
            return int(value)

        def text() -> bytes:
            return f.read(number("Q"))

        def skip(kind: int) -> None:
            if kind == _STRING:
                f.seek(number("Q"), 1)
            elif kind == _ARRAY:
                item, count = number("I"), number("Q")
                if item in _SCALAR_SIZES:
                    f.seek(_SCALAR_SIZES[item] * count, 1)
                else:
                    for _ in range(count):
                        skip(item)
            else:
                f.seek(_SCALAR_SIZES[kind], 1)

        if f.read(4) != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF file")
        number("I")  # version
        number("Q")  # tensors
        for _ in range(number("Q")):
            key, kind = text(), number("I")
            if key == b"general.architecture" and kind == _STRING:
                return text().decode()
            skip(kind)
    raise ConfigError(f"{path} names no general.architecture")


def check_adapter(path: str | Path) -> Path:
    """The adapter's path, if it is a readable LoRA GGUF file.

    Raises:
        ConfigError: missing, unreadable or not a GGUF file.
    """
    path = Path(path).expanduser()
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConfigError(
            f"adapter {path} can't be read ({e.strerror}); run taskloom learn again"
        ) from e
    if magic != b"GGUF":
        raise ConfigError(f"adapter {path} is not a GGUF file; run taskloom learn again")
    return path
