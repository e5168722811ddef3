"""Where llama.cpp put a model, as llama.cpp itself reports it while loading.

The host listens to llama.cpp's log while it loads the model and creates the context
(`listen()`), and reads from it the buffers each device got (`CUDA0 model buffer size
= 240.12 MiB`, `CPU_Mapped …`, the KV and compute buffers) and the layers offloaded
(`offloaded 19/19 layers to GPU`, logged by builds with offload), and the devices it
used (`using device CUDA0 (NVIDIA H200) - 140000 MiB free`). None of it echoes a flag:
a CPU build asked for a GPU shows `CPU` and `0/19`.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

BUFFER = re.compile(r"(\S+) (?:model|KV|compute|RS|output) buffer size\s*=\s*([\d.]+) MiB")
OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
DEVICE = re.compile(r"using device (\S+) \(([^)]*)\)")


@dataclass
class LoadLog:
    """What llama.cpp logged while a model loaded."""

    lines: list[str] = field(default_factory=list)
    callback: Any = None  # the C callback, kept alive as long as the log is

    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def listen() -> Iterator[LoadLog]:
    """Collect llama.cpp's log lines for the duration (nothing is printed meanwhile)."""
    captured = LoadLog()

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        captured.lines.append(text.decode("utf-8", errors="replace"))

    captured.callback = on_log
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
    devices = dict(DEVICE.findall(text))  # CUDA0 → NVIDIA H200: the devices it used
    on_device: dict[str, float] = {}
    for name, mib in BUFFER.findall(text):
        if name in devices:  # host buffers (CPU_Mapped, CUDA_Host, AMX) name no device
            on_device[name] = on_device.get(name, 0.0) + float(mib)
    found = OFFLOADED.findall(text)
    offloaded = int(found[-1][0]) if found and on_device else 0
    names = sorted(on_device)
    return {
        "device": ",".join(names) or "CPU",
        "device_name": ",".join(devices[n] for n in names) or "-",
        "gpu_layers": f"{offloaded}/{n_layers}",
        "vram_mb": round(float(sum(on_device.values())), 1),
    }


def rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_params(
    *, n_gpu_layers: int | None, gpu: int | None, main_gpu: int, repack: bool = True
) -> Any:
    """llama.cpp's model parameters that place the model (see `ModelHost`'s arguments).

    Args:
        repack: let the CPU backend repack the weights for its faster matmul (about 8%
            on a prompt here). A repacked matmul of 4 or more rows rounds otherwise than
            one row's, so a drafted decode would not give one-token decoding's logits.
    """
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = repack
    params.n_gpu_layers = (-1 if gpu is not None else 0) if n_gpu_layers is None else n_gpu_layers
    params.main_gpu = gpu if gpu is not None else main_gpu
    if gpu is not None:
        params.split_mode = llama_cpp.LLAMA_SPLIT_MODE_NONE
    if amx_in_use():
        # The weights repacked for AMX crash the first decode on some Xeons
        # (SIGSEGV in ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824, seen here
        # on this Q4_K_M model): keep them in the plain CPU buffers there.
        params.use_extra_bufts = False
    return params


def amx_in_use() -> bool:
    """Whether llama.cpp's CPU backend would use Intel AMX on this machine."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
