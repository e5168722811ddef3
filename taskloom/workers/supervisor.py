"""One supervisor per box: it keeps a worker process per GPU (or N on a CPU box) alive.

`taskloom worker --gpus 0,1 --processes 2` starts four `taskloom worker` processes,
each pinned to its GPU with CUDA_VISIBLE_DEVICES (so each sees one device, CUDA's 0),
named `BOX.gpuG.I` (`BOX.cpu.I` on a CPU box) so that `taskloom workers` shows box,
GPU and index. Workers never fork (CUDA does not survive `fork()`): each child is a
fresh interpreter, started with `subprocess`.

- A child that dies is started again after a backoff (`restart_backoff_s`, doubling).
  One that exits `crash_loop_exits` times within `crash_loop_window_s` is left down,
  with one line saying why (its exit status and the last line it logged).
- A child that exits 0 is not restarted: it was drained (`taskloom drain`) or ran out
  of work (`--burst`). One that exits 75 asked for a fresh process (`--max-jobs`, or a
  step stuck past its deadline): it is started again at once, and that is no crash.
- SIGTERM (or SIGINT) drains every child: the current steps finish, then they exit. A
  second one is passed on too, and the children put their running steps back.
- The children exit with the supervisor, even when it is SIGKILLed: each asks Linux for
  a SIGTERM when its parent dies (`adopt`), and drains.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from taskloom.config import Settings
from taskloom.logs import get_logger
from taskloom.workers.watchdog import EXIT_RESTART

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class ChildSpec:
    """One worker process the supervisor keeps alive.

    Attributes:
        name: its worker name, `BOX.gpuG.I` or `BOX.cpu.I`.
        index: its index on its GPU (or on the box, on the CPU).
        gpu: the GPU's index on the box; None on the CPU.
        device: the CUDA_VISIBLE_DEVICES entry it is pinned to; None on the CPU.
    """

    name: str
    index: int
    gpu: int | None = None
    device: str | None = None


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    relay: threading.Thread | None = None
    started_at: float = 0.0
    exits: deque[float] = field(default_factory=deque)  # crash times, within the window
    restart_at: float | None = None
    last_line: str = ""
    gave_up: str = ""  # why it is left down
    is_done: bool = False  # exited 0: drained or out of work


def plan_children(
    box: str, *, gpus: list[tuple[int, str]] | None, processes: int
) -> list[ChildSpec]:
    """The children of a box: `processes` per GPU, or `processes` on the CPU."""
    if gpus is None:
        return [ChildSpec(name=f"{box}.cpu.{i}", index=i) for i in range(processes)]
    return [
        ChildSpec(name=f"{box}.gpu{gpu}.{i}", index=i, gpu=gpu, device=device)
        for gpu, device in gpus
        for i in range(processes)
    ]


def adopt(supervisor_pid: int) -> None:
    """In a child: ask for SIGTERM when the supervisor dies, even by SIGKILL (Linux).

    If it died before we asked, exit at once. Elsewhere, the heartbeat's parent check
    (`parent_pid`) is the fallback.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor_pid:
        log.warning("worker_orphaned", supervisor_pid=supervisor_pid)
        raise SystemExit(0)


class Supervisor:
    """Start, watch and restart the children of one box.

    Args:
        children: what to run.
        command: the worker command line, without `--name` (added per child).
        settings: restart backoff and crash-loop limits.
        env: the children's environment (each child adds its CUDA_VISIBLE_DEVICES).
        on_exit: called with a child's pid when it exits (the metrics forget its gauges).
    """

    def __init__(
        self,
        children: list[ChildSpec],
        *,
        command: list[str],
        settings: Settings,
        env: dict[str, str],
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.children = [_Child(spec) for spec in children]
        self.command = command
        self.settings = settings
        self.env = env
        self.on_exit = on_exit
        self._signals = 0
        self._forwarded = 0
        self._wake = threading.Event()

    # -- what /healthz shows ---------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, str]]:
        """(healthy, state by child): healthy while not draining and every child that is
        not done runs, or is about to be restarted."""
        states = {c.spec.name: self._state(c) for c in self.children}
        is_ok = self._signals == 0 and all(s in {"running", "done"} for s in states.values())
        return is_ok and any(s == "running" for s in states.values()), states

    def _state(self, child: _Child) -> str:
        if child.gave_up:
            return "crash-looped"
        if child.is_done:
            return "done"
        if child.proc is not None and child.proc.poll() is None:
            return "running"
        return "restarting"

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until every child is done or left down; 0 unless one crash-looped."""
        self._install_signals()
        for child in self.children:
            self._start(child)
        log.info("supervisor_started", children=[c.spec.name for c in self.children])
        while True:
            self._forward_signals()
            now = time.monotonic()
            for child in self.children:
                self._tend(child, now)
            if all(c.is_done or c.gave_up for c in self.children):
                break
            self._wake.wait(0.1)
            self._wake.clear()
        failed = [c for c in self.children if c.gave_up]
        log.info("supervisor_stopped", crash_looped=[c.spec.name for c in failed])
        return 1 if failed else 0

    def _start(self, child: _Child) -> None:
        spec = child.spec
        env = dict(self.env)
        if spec.device is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.device
            env["TASKLOOM_GPU"] = "0"  # the one device it sees
        cmd = [*self.command, "--name", spec.name]
        cmd += ["--child", f"{os.getpid()}:{'-' if spec.gpu is None else spec.gpu}:{spec.index}"]
        # Their own process group: a Ctrl-C reaches the supervisor, which passes it on once.
        child.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        if child.proc.stderr is not None:
            child.relay = threading.Thread(
                target=self._relay, args=(child, child.proc.stderr), daemon=True
            )
            child.relay.start()
        log.info("child_started", child=spec.name, pid=child.proc.pid, gpu=spec.gpu)

    def _relay(self, child: _Child, stream: IO[bytes]) -> None:
        """Pass a child's stderr on to ours (the journal), keeping its last line."""
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                child.last_line = line
            sys.stderr.write(raw.decode(errors="replace"))
            sys.stderr.flush()
        stream.close()
        self._wake.set()

    def _tend(self, child: _Child, now: float) -> None:
        if child.is_done or child.gave_up:
            return
        if child.proc is None:
            if child.restart_at is not None and now >= child.restart_at and not self._signals:
                self._start(child)
            elif self._signals:
                child.is_done = True  # draining: a child waiting for its restart stays down
            return
        code = child.proc.poll()
        if code is None:
            return
        pid = child.proc.pid
        child.proc = None
        if child.relay is not None:
            child.relay.join(timeout=1.0)  # its last words, for a crash loop's line
        if self.on_exit is not None:
            self.on_exit(pid)
        self._exited(child, code, now)

    def _exited(self, child: _Child, code: int, now: float) -> None:
        name = child.spec.name
        if code == 0 or self._signals:
            log.info("child_stopped", child=name, exit=code)
            child.is_done = True
            return
        if code == EXIT_RESTART:  # --max-jobs, or a stuck step: a fresh process, at once
            log.info("child_recycled", child=name)
            self._start(child)
            return
        window_s = self.settings.crash_loop_window_s
        child.exits.append(now)
        while child.exits and now - child.exits[0] > window_s:
            child.exits.popleft()
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        if len(child.exits) >= self.settings.crash_loop_exits:
            child.gave_up = (
                f"worker {name} crash-looped ({len(child.exits)} exits within "
                f"{window_s:g}s, last: {status}: {child.last_line or 'no output'}); "
                "not restarting it: fix the cause and restart the supervisor"
            )
            log.error("child_crash_looped", child=name, status=status)
            sys.stderr.write(f"taskloom: error: {child.gave_up}\n")
            sys.stderr.flush()
            return
        delay_s = min(self.settings.restart_backoff_s * 2 ** (len(child.exits) - 1), MAX_BACKOFF_S)
        child.restart_at = now + delay_s
        log.warning("child_died", child=name, status=status, restart_in_s=round(delay_s, 2))

    # -- signals ---------------------------------------------------------------------

    def _install_signals(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            self._wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)

    def _forward_signals(self) -> None:
        """Pass each SIGTERM on to the children, once each (the first drains them)."""
        while self._forwarded < self._signals:
            self._forwarded += 1
            log.info("supervisor_draining", signals=self._forwarded)
            for child in self.children:
                if child.proc is not None and child.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(signal.SIGTERM)
