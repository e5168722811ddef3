"""`python -m llama_cpp.server`, with the model host's AMX workaround.

llama.cpp's AMX weight repacking segfaults in the first decode on some Xeons
(ggml-org/llama.cpp#20824), and llama-cpp-python's server has no flag to turn it off.
`python -m taskloom.testing.llama_server ARGS` runs the same server with the same
arguments, keeping the weights in plain CPU buffers where llama.cpp would use AMX, as
taskloom's own model host does (`amx_in_use`). Elsewhere it is the stock server.
"""

from __future__ import annotations

import runpy
from typing import Any

import llama_cpp.llama_cpp as llama_cpp

from taskloom.chat.llama.placement import amx_in_use


def main() -> None:
    if amx_in_use():
        stock = llama_cpp.llama_model_default_params

        def without_amx() -> Any:
            params = stock()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = without_amx  # what Llama() calls
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
