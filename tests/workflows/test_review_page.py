"""The review page in a real headless Chromium: approve one review, edit another; both
runs finish with those values (real Redis, real worker processes). With
TASKLOOM_SECRET set, the page refuses a request without the token."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.api.review_page import ReviewServer, review_server
from tests.workers.redis_helpers import Spawn, spawn_worker, taskloom, wait_for
from tests.workflows.test_review_wait import desk, submit, three_steps

__all__ = ["spawn_worker"]

pytestmark = pytest.mark.skipif(
    not shutil.which("chromedriver") and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture
def page(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReviewServer]:
    monkeypatch.setenv("TASKLOOM_SECRET", "page-secret")
    server = review_server(redis_url=redis_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def form(browser: Any, run_id: str) -> Any:
    return browser.find_element("css selector", f"form.review[data-run='{run_id}']")


def test_the_page_approves_one_review_and_edits_another(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn, browser: Any, page: ReviewServer
) -> None:
    env = {"TASKLOOM_SECRET": "page-secret"}
    spawn_worker(env=env)
    spawn_worker("--queue", "runs", env=env)
    plan = three_steps(tmp_path / "executions.log", review="always")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    kept = submit(tmp_path / "a", redis_url, plan, env=env)
    edited = submit(tmp_path / "b", redis_url, plan, env=env)
    wait_for(lambda: len(desk(redis_url).pending()) == 2, timeout_s=60, what="two reviews")

    host, port = page.server_address[:2]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{host!s}:{port}/")
    assert refused.value.code == 403
    assert host == "127.0.0.1"

    browser.get(page.url)
    form(browser, kept).find_element("css selector", "button[value='approve']").click()
    wait_for(lambda: len(browser.find_elements("css selector", "form.review")) == 1)
    box = form(browser, edited).find_element("name", "value")
    box.clear()
    box.send_keys('{"value": "not a number"}')
    form(browser, edited).find_element("css selector", "button[value='approve']").click()
    [shown] = wait_for(lambda: browser.find_elements("id", "message"), what="the error")
    message = shown.text
    assert "does not fit" in message and "value" in message
    box = form(browser, edited).find_element("name", "value")
    box.clear()
    box.send_keys('{"value": 99}')
    form(browser, edited).find_element("css selector", "button[value='approve']").click()
    wait_for(lambda: browser.find_elements("id", "none"), what="the page to empty")

    outputs = {}
    for run_id in (kept, edited):
        done = taskloom("result", run_id, "--wait", "--json", "--redis-url", redis_url, env=env)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        outputs[run_id] = record["output"]["middle"]
        assert [r["by"] for r in record["reviews"]] == ["review page"]
    assert outputs == {kept: 7, edited: 99}
