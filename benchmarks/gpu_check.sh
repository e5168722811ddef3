#!/usr/bin/env bash
# The GPU check: continuous batching on one CUDA worker, concurrency 1 against 32.
#
#     benchmarks/gpu_check.sh            # on a box with an NVIDIA GPU, nvcc and cmake
#
# 1. Builds llama-cpp-python with CUDA (CMAKE_ARGS="-DGGML_CUDA=on") into its own venv,
#    .venv-gpu, bypassing pip's cache for that one package, so the CPU wheel cached in
#    ~/.cache/pip is neither reused here nor replaced there.
# 2. Starts one `taskloom worker --gpu 0` (every layer offloaded) per concurrency, and
#    runs benchmarks/bench_batching.py's fan-out (24 distinct extraction texts) at
#    concurrency 1 and 32.
# 3. Prints steps/s and tokens/s of each, the ratio 32 ÷ 1, the layers the worker
#    offloaded (its registration's `gpu_layers`) and the GPU memory in use (nvidia-smi,
#    sampled every 0.5 s). The bare batched-decode ceiling runs on the GPU as well.
#    Then benchmarks/bench_speculate.py --sets quick: drafts on and off, on the GPU, and
#    benchmarks/bench_adapter.py (adapter training and serving) where torch sees CUDA.
# 4. Runs `taskloom worker --gpus all` once (benchmarks/gpu_box.py) and prints what
#    `taskloom workers --json` shows for its children, a step on each, and /metrics.
# GPU_CHECK_VENV and GPU_CHECK_CONCURRENCY override the venv and the high concurrency.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${GPU_CHECK_VENV:-$here/.venv-gpu}"
high="${GPU_CHECK_CONCURRENCY:-32}"
python="$venv/bin/python"
# The llama-cpp-python version the CPU install uses (make install), else the pinned one.
version="$("${PYTHON:-$here/.venv/bin/python}" -c \
    'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || echo 0.3.36)"

command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found: no NVIDIA GPU here" >&2; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if ! "$python" -c 'import llama_cpp; assert llama_cpp.llama_supports_gpu_offload()' 2>/dev/null; then
    echo "== building llama-cpp-python $version with CUDA into $venv (minutes)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    # --no-cache-dir: this build must neither come from nor go into the CPU wheel cache.
    CMAKE_ARGS="-DGGML_CUDA=on" FORCE_CMAKE=1 "$venv/bin/pip" install -q --no-cache-dir \
        --no-binary llama-cpp-python "llama-cpp-python==$version"
    "$venv/bin/pip" install -q -e "$here"
fi
"$python" -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' \
    || { echo "gpu_check: llama-cpp-python in $venv was built without GPU offload" >&2; exit 3; }

out="$(mktemp -d)"
sampler=""
trap '[[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null; rm -rf "$out"' EXIT
# GPU memory in use, sampled every half second while the benchmark runs.
(while true; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 >>"$out/vram.txt"
    sleep 0.5
done) &
sampler=$!
cd "$here"
echo "== fan-out on one worker with --gpu 0 (all layers offloaded), concurrency 1 and $high"
TASKLOOM_GPU=0 TASKLOOM_N_GPU_LAYERS=-1 "$python" benchmarks/bench_batching.py --concurrency "$high"
echo "== speculative decoding on the GPU: drafts on and off, the same fan-out"
TASKLOOM_GPU=0 TASKLOOM_N_GPU_LAYERS=-1 "$python" benchmarks/bench_speculate.py --sets quick
echo "== adapter training and serving on the GPU (needs torch with CUDA in $venv)"
if "$python" -c 'import torch, peft, transformers, gguf; assert torch.cuda.is_available()' 2>/dev/null; then
    TASKLOOM_GPU=0 TASKLOOM_N_GPU_LAYERS=-1 "$python" benchmarks/bench_adapter.py
    TASKLOOM_GPU=0 "$python" benchmarks/bench_adapter.py --time
else
    echo "skipped: $venv has no CUDA torch with the learn extra (pip install torch, then"
    echo "  pip install -r requirements-learn.lock without its torch pin)"
fi
kill "$sampler" 2>/dev/null || true
sampler=""
echo "peak GPU memory in use during the benchmark: $(sort -n "$out/vram.txt" | tail -1) MiB" \
    "(before it: $(head -1 "$out/vram.txt") MiB)"

# 4. One supervisor for the whole box, `taskloom worker --gpus all`: what its children
#    report after loading (device, layers offloaded, VRAM), a step each, /metrics.
echo "== taskloom worker --gpus all (one supervisor for the box)"
"$python" benchmarks/gpu_box.py
