"""GPU checks that can't lie: this machine's llama-cpp-python is a CPU-only build, so
every GPU asked for is refused with the CUDA build command; CUDA_VISIBLE_DEVICES is read;
what a loaded model reports comes from llama.cpp."""

from __future__ import annotations

import pytest

from taskloom.chat import gpu
from taskloom.chat.llama import placement
from taskloom.config import Settings
from taskloom.errors import ConfigError

pytestmark = pytest.mark.skipif(gpu.supports_offload(), reason="needs a CPU-only llama.cpp build")


def test_this_build_is_cpu_only_and_the_command_forces_a_rebuild() -> None:
    assert gpu.supports_offload() is False
    command = gpu.cuda_install_command()
    assert command.startswith('CMAKE_ARGS="-DGGML_CUDA=on" pip install')
    assert "--force-reinstall --no-cache-dir" in command and "llama-cpp-python==" in command


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        (Settings(gpu=0), "--gpu 0 (TASKLOOM_GPU)"),
        (Settings(n_gpu_layers=-1), "--n-gpu-layers -1 (TASKLOOM_N_GPU_LAYERS)"),
    ],
)
def test_a_gpu_asked_for_on_a_cpu_build_is_refused(settings: Settings, flag: str) -> None:
    with pytest.raises(ConfigError) as e:
        gpu.check_settings(settings)
    assert str(e.value).startswith(f"{flag} needs a llama.cpp build with GPU offload")
    assert gpu.cuda_install_command() in str(e.value)


def test_the_cpu_is_always_allowed() -> None:
    gpu.check_settings(Settings())
    gpu.check_settings(Settings(n_gpu_layers=0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", []), ("-1", []), ("2", ["2"]), ("1,3", ["1", "3"]), ("0,-1,2", ["0"])],
)
def test_cuda_visible_devices_is_read_as_cuda_reads_it(
    value: str | None, expected: list[str] | None
) -> None:
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert gpu.visible_devices(environ) == expected


def test_gpu_lists_are_parsed_and_checked_against_the_box() -> None:
    assert gpu.parse_gpus("all") is None
    assert gpu.parse_gpus("0,2") == [0, 2]
    for bad in ("", "x", "0,0", "-1"):
        with pytest.raises(ConfigError, match="is not a GPU list"):
            gpu.parse_gpus(bad)
    with pytest.raises(ConfigError, match=r"GPU 2 is not on this box \(GPUs: 0-1, from CUDA_VIS"):
        gpu.resolve_gpus("0,2", {"CUDA_VISIBLE_DEVICES": "4,5"})
    with pytest.raises(ConfigError, match=r"--gpus 0,1 needs a llama\.cpp build with GPU"):
        gpu.resolve_gpus("0,1", {"CUDA_VISIBLE_DEVICES": "4,5"})  # known indexes, CPU build


def test_placement_honours_flags_then_cuda_visible_devices() -> None:
    assert gpu.placement(Settings(), {}) == (None, 0)
    assert gpu.placement(Settings(gpu=1), {}) == (1, -1)
    assert gpu.placement(Settings(gpu=1, n_gpu_layers=4), {}) == (1, 4)
    # Visible devices on a CPU-only build: the CPU, as llama.cpp can do nothing else.
    assert gpu.placement(Settings(), {"CUDA_VISIBLE_DEVICES": "3"}) == (None, 0)


def test_a_load_log_gives_device_layers_and_vram() -> None:
    cuda = placement.LoadLog(
        [
            "llama_model_load_from_file_impl: using device CUDA0 (NVIDIA H200) - 140487 MiB free\n",
            "load_tensors: offloading 18 repeating layers to GPU\n",
            "load_tensors: offloaded 19/19 layers to GPU\n",
            "load_tensors:        CUDA0 model buffer size =   230.50 MiB\n",
            "load_tensors:   CPU_Mapped model buffer size =    80.00 MiB\n",
            "llama_kv_cache:      CUDA0 KV buffer size =    72.00 MiB\n",
            "llama_context:  CUDA_Host  output buffer size =     1.00 MiB\n",
            "llama_context:      CUDA0 compute buffer size =    10.25 MiB\n",
        ]
    )
    got = placement.read(cuda, n_layers=19)
    assert got == {
        "device": "CUDA0",
        "device_name": "NVIDIA H200",
        "gpu_layers": "19/19",
        "vram_mb": 312.8,
    }
    cpu = placement.LoadLog(
        [
            "load_tensors:   CPU_Mapped model buffer size =   241.0 MiB\n",
            "load_tensors:          AMX model buffer size =   213.9 MiB\n",
        ]
    )
    got = placement.read(cpu, n_layers=19)
    assert got == {"device": "CPU", "device_name": "-", "gpu_layers": "0/19", "vram_mb": 0.0}
