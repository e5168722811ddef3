"""GPUs: what this llama.cpp build can offload to, which GPUs a box has, where a model runs.

Checks that can't lie:
- A GPU asked for (`--gpus`, `--gpu`, `--n-gpu-layers`, `TASKLOOM_GPU`) on a llama.cpp
  build without GPU offload is a `ConfigError` naming the command that builds one,
  never a silent run on the CPU.
- `CUDA_VISIBLE_DEVICES` is respected: a worker started under it with no GPU named runs
  on the first device it makes visible (CUDA numbers the visible devices from 0).
- What a worker shows is what llama.cpp reports after loading (`taskloom.chat.llama.
  placement`), never the flag.

The box's GPUs are the entries of `CUDA_VISIBLE_DEVICES` when it is set, else what
`nvidia-smi -L` lists; unknown (None) where neither says.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from taskloom.config import Settings
from taskloom.errors import ConfigError


def cuda_install_command() -> str:
    """The command that rebuilds llama-cpp-python with CUDA, for the installed version.

    `--force-reinstall --no-cache-dir`: pip's wheel cache would otherwise hand back the
    CPU wheel it built before, without compiling anything.
    """
    try:
        from importlib.metadata import version

        pin = f"llama-cpp-python=={version('llama-cpp-python')}"
    except Exception:
        pin = "llama-cpp-python>=0.3.16,<0.4"
    return f'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir "{pin}"'


def supports_offload() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (a CUDA, Metal, … build)."""
    import llama_cpp  # only where a GPU is asked for: `--model scripted` never loads it

    return bool(llama_cpp.llama_supports_gpu_offload())


def check_offload(what: str) -> None:
    """Raise unless this build offloads to a GPU; `what` names the flag that asked.

    Raises:
        ConfigError: a CPU-only build, with the command that builds a CUDA one.
    """
    if not supports_offload():
        raise ConfigError(
            f"{what} needs a llama.cpp build with GPU offload, and this llama-cpp-python "
            f"is a CPU-only build; rebuild it with CUDA: {cuda_install_command()}"
        )


def visible_devices(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES (None when unset; [] when it hides every GPU)."""
    value = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
    valid: list[str] = []
    for e in entries:
        if e.startswith("-"):
            break
        valid.append(e)
    return valid


def box_devices(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The devices a supervisor may pin its children to, as CUDA_VISIBLE_DEVICES entries.

    From CUDA_VISIBLE_DEVICES when set, else one per GPU `nvidia-smi -L` lists; None when
    neither can tell.
    """
    visible = visible_devices(environ)
    if visible is not None:
        return visible
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU"))]


def parse_gpus(spec: str) -> list[int] | None:
    """`--gpus 0,2` → [0, 2]; `all` → None.

    Raises:
        ConfigError: not `all` nor a comma-separated list of distinct indexes.
    """
    if spec.strip().lower() == "all":
        return None
    try:
        indexes = [int(p) for p in spec.split(",") if p.strip()]
    except ValueError:
        indexes = []
    if not indexes or any(i < 0 for i in indexes) or len(set(indexes)) != len(indexes):
        raise ConfigError(f"--gpus {spec!r} is not a GPU list; pass indexes such as 0,1 or 'all'")
    return indexes


def resolve_gpus(spec: str, environ: Mapping[str, str] | None = None) -> list[tuple[int, str]]:
    """The GPUs `--gpus` names on this box: (index on the box, CUDA_VISIBLE_DEVICES entry).

    Indexes count the box's devices (those CUDA_VISIBLE_DEVICES leaves visible, if set).
    An index that is not on the box fails first (a typo), then a build without offload.

    Raises:
        ConfigError: a bad list, an unknown index, no GPU found, or a CPU-only build.
    """
    wanted = parse_gpus(spec)
    devices = box_devices(environ)
    if devices is not None and wanted is not None:
        unknown = [i for i in wanted if i >= len(devices)]
        if unknown:
            where = (
                f"CUDA_VISIBLE_DEVICES={','.join(devices)}"
                if visible_devices(environ) is not None
                else "nvidia-smi -L"
            )
            have = f"0-{len(devices) - 1}" if devices else "none"
            raise ConfigError(
                f"GPU {unknown[0]} is not on this box (GPUs: {have}, from {where}); "
                "pass indexes from `nvidia-smi -L`, or --gpus all"
            )
    check_offload(f"--gpus {spec}")
    if devices is None or not devices:
        raise ConfigError(
            "no GPU found on this box (CUDA_VISIBLE_DEVICES hides them all, or nvidia-smi "
            "lists none); check the driver with nvidia-smi, or use --processes N on the CPU"
        )
    indexes = list(range(len(devices))) if wanted is None else wanted
    return [(i, devices[i]) for i in indexes]


def check_settings(settings: Settings) -> None:
    """Fail early when the settings ask for a GPU this build can't use.

    `n_gpu_layers=0` asks for the CPU, which every build has.

    Raises:
        ConfigError: `gpu` or a non-zero `n_gpu_layers` on a CPU-only build.
    """
    if settings.gpu is not None:
        check_offload(f"--gpu {settings.gpu} (TASKLOOM_GPU)")
    if settings.n_gpu_layers:
        check_offload(f"--n-gpu-layers {settings.n_gpu_layers} (TASKLOOM_N_GPU_LAYERS)")


def placement(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[int | None, int]:
    """(GPU, layers to offload) for a model under `settings`: what the host asks llama.cpp.

    A GPU named runs every layer there unless `n_gpu_layers` says otherwise. With none
    named, CUDA_VISIBLE_DEVICES naming a device on a build with offload means its first
    device (CUDA's 0); otherwise the CPU.
    """
    gpu = settings.gpu
    if gpu is None and settings.n_gpu_layers is None:
        visible = visible_devices(environ)
        if visible and supports_offload():
            gpu = 0
    if settings.n_gpu_layers is not None:
        return gpu, settings.n_gpu_layers
    return gpu, -1 if gpu is not None else 0
