#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (CPU) from the llama.cpp sources vendored in the
# llama-cpp-python source distribution, the same version as the one installed, and cache
# the binary outside the repository, as pip caches the llama-cpp-python wheel:
#
#     benchmarks/build_llama_server.sh            # prints the binary's path
#
# The binary lands in ~/.cache/taskloom/llama-server-<version>/llama-server and later runs
# reuse it. Needs only what the registries provide: pip (for the sdist), cmake and a C++
# compiler. No network besides pip: the web UI is neither built nor fetched.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
version="${LLAMA_CPP_VERSION:-$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')}"
cache="${TASKLOOM_CACHE:-$HOME/.cache/taskloom}/llama-server-$version"
binary="$cache/llama-server"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

mkdir -p "$cache/src"
if [[ ! -d "$cache/src/llama-cpp-python-$version" ]]; then
    "$python" -m pip download -q "llama-cpp-python==$version" --no-binary llama-cpp-python --no-deps \
        -d "$cache/src" >&2
    tar -xzf "$cache/src/llama_cpp_python-$version.tar.gz" -C "$cache/src" 2>/dev/null \
        || tar -xzf "$cache/src/llama-cpp-python-$version.tar.gz" -C "$cache/src"
    # sdists name their folder either way; settle on one.
    [[ -d "$cache/src/llama_cpp_python-$version" ]] \
        && mv "$cache/src/llama_cpp_python-$version" "$cache/src/llama-cpp-python-$version"
fi
llama="$cache/src/llama-cpp-python-$version/vendor/llama.cpp"

cmake -S "$llama" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$cache/build" --target llama-server -j "$(nproc)" >&2
cp "$cache/build/bin/llama-server" "$binary"
rm -rf "$cache/build"
echo "$binary"
