"""Where llama.cpp put a model, as llama.cpp itself reports it while loading.

The host listens to llama.cpp's log while it loads the model and creates the context
(`listen()`), and reads from it the buffers each device got (`CUDA0 model buffer size
= 240.12 MiB`, `CPU_Mapped …`, the KV and compute buffers) and the layers offloaded
(`offloaded 19/19 layers to GPU`, logged by builds with offload). The device's name
comes from ggml's device registry (`NVIDIA H200`); a CPU build reports its CPU. None of
it echoes a flag: a CPU build asked for a GPU shows `CPU` and `0/19`.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

BUFFER = re.compile(r"(\S+) (?:model|KV|compute|RS|output) buffer size\s*=\s*([\d.]+) MiB")
OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
HOST_BUFFERS = ("CPU", "CUDA_Host", "CPU_Mapped", "CPU_REPACK", "CPU_AARCH64")


@dataclass
class LoadLog:
    """What llama.cpp logged while a model loaded."""

    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def listen() -> Iterator[LoadLog]:
    """Collect llama.cpp's log lines for the duration (nothing is printed meanwhile)."""
    captured = LoadLog()

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        captured.lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    try:
        yield captured
    finally:
        from llama_cpp import _logger  # llama-cpp-python's own callback, put back

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def read(log: LoadLog, *, n_layers: int) -> dict[str, Any]:
    """What `taskloom workers` shows: device, its name, layers offloaded, VRAM used (MiB).

    Args:
        log: what llama.cpp logged while loading the model and creating its context.
        n_layers: the model's layers, counting the output layer.
    """
    text = log.text()
    on_device: dict[str, float] = {}
    for name, mib in BUFFER.findall(text):
        if name not in HOST_BUFFERS and not name.startswith("CPU"):
            on_device[name] = on_device.get(name, 0.0) + float(mib)
    found = OFFLOADED.findall(text)
    offloaded = int(found[-1][0]) if found else 0
    if not on_device:
        offloaded = 0  # nothing landed on a device, whatever was asked
    names = sorted(on_device)
    return {
        "device": ",".join(names) or "CPU",
        "device_name": ",".join(describe(n) for n in names) if names else cpu(),
        "gpu_layers": f"{offloaded}/{n_layers}",
        "vram_mb": round(sum(on_device.values()), 1),
    }


def _ggml() -> Any:
    """ggml's device registry, through llama-cpp-python's own copy of the library."""
    from llama_cpp import _ggml

    lib = _ggml.libggml
    lib.ggml_backend_dev_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_description.restype = ctypes.c_char_p
    lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    return lib


def describe(device: str) -> str:
    """A device's description from ggml (`CUDA0` → `NVIDIA H200`); '' if unknown."""
    try:
        lib = _ggml()
        dev = lib.ggml_backend_dev_by_name(device.encode())
        return str(lib.ggml_backend_dev_description(dev).decode()) if dev else ""
    except (AttributeError, OSError):
        return ""


def cpu() -> str:
    """The CPU device's description from ggml (its model name); '' if unknown."""
    try:
        lib = _ggml()
        dev = lib.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
        return str(lib.ggml_backend_dev_description(dev).decode()) if dev else ""
    except (AttributeError, OSError):
        return ""
