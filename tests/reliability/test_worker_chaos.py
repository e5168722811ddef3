"""Workers die under a running plan: every step finishes, and is merged exactly once.

Like Temporal's and Ray's chaos suites: kill every worker at once, then restart one
at random about every second (at random gaps: see `chaos.kill_gaps`). Workers run with
a 1 s lease (the spawn_worker fixture), so a dead worker's job is queued again about a
second later.
"""

from __future__ import annotations

import json
import random
import signal
import time
from itertools import islice
from pathlib import Path

import pytest

from tests.reliability.chaos import (
    coordinator,
    drive,
    expected_output,
    fan_plan,
    kill_gaps,
    merges,
    process,
    redelivered_before_a_kill,
    write_plan,
)
from tests.workers.redis_helpers import Spawn, counts, wait_for


def test_killing_every_worker_mid_run_loses_nothing(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    plan = fan_plan(40, redis_url, sleep_s=0.1)
    path = write_plan(tmp_path / "plan.json", plan)
    first = [spawn_worker(), spawn_worker()]
    cmd = coordinator("run", str(path), "--redis-url", redis_url, "--run-id", "killall", "--json")
    with process(cmd) as run:
        wait_for(
            lambda: sum(counts(redis_url, "test:started").values()) >= 6, what="steps to start"
        )
        for w in first:
            w.send_signal(signal.SIGKILL)  # every worker, each holding a leased step
        for w in first:
            w.wait(timeout=5)
        done_before = sum(counts(redis_url, "test:executed").values())
        assert done_before < len(plan["steps"])  # the run really was in the middle
        spawn_worker()
        spawn_worker()
        out, err = run.output(timeout_s=90)
    assert run.returncode == 0, err
    record = json.loads(out)
    assert record["status"] == "done" and record["output"] == expected_output(plan)
    ids = [s["id"] for s in plan["steps"]]
    assert merges(redis_url, "killall") == dict.fromkeys(ids, 1)  # exactly-once merge
    executed = counts(redis_url, "test:executed")
    assert set(executed) == set(ids)  # at-least-once delivery: every step ran


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_restarting_a_random_worker_every_second_500_steps(
    tmp_path: Path, redis_url: str, spawn_worker: Spawn
) -> None:
    """500 steps on 3 workers; about every second one of them is SIGKILLed and replaced."""
    plan = fan_plan(500, redis_url, sleep_s=0.02)
    path = write_plan(tmp_path / "plan.json", plan)
    workers = [spawn_worker() for _ in range(3)]
    rng = random.Random(7)
    gaps = kill_gaps(rng)
    kills = 0
    killed: list[str] = []  # worker pids (worker names hold them) and when, for a failure
    with process(drive(path, redis_url, "chaos500")) as run:
        deadline = time.monotonic() + 240
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(next(gaps))
            if run.poll() is not None:
                break
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=5)
            killed.append(f"{victim.pid} at {time.strftime('%H:%M:%S')}")
            kills += 1
            workers.append(spawn_worker(ready=False))
        out, err = run.output(timeout_s=60)
    assert run.returncode == 0, err[-2000:]
    record = json.loads(out.splitlines()[-1])["record"]
    assert kills >= 3, "the run ended before the chaos began"
    unfinished = [(s["id"], s["status"], s.get("error")) for s in record["steps"]]
    lost = [u for u in unfinished if u[1] != "done"][:3]
    assert record["status"] == "done", f"{lost}; kills: {killed}"
    assert record["output"] == expected_output(plan)  # 0 lost
    ids = [s["id"] for s in plan["steps"]]
    assert merges(redis_url, "chaos500") == dict.fromkeys(ids, 1)  # 0 duplicates
    assert set(counts(redis_url, "test:executed")) == set(ids)


def test_the_kills_are_not_in_step_with_the_lease() -> None:
    """A dead worker's job is claimed again one lease (1 s) after its claim. Kills a fixed
    second apart (the sleep, plus ~20 ms to kill and respawn) came just after that claim
    every time, so a short job lost once was often lost again, and a job lost 3 times is
    dead-lettered as poison; the chaos test's random gaps put the next kill anywhere."""
    lease_s, running_s = 1.0, 0.05  # a 20 ms step is claimed and running for about 50 ms
    periodic = [1.02] * 500
    assert redelivered_before_a_kill(periodic, lease_s=lease_s, within_s=running_s) == 1.0
    gaps = list(islice(kill_gaps(random.Random(7)), 500))
    assert sum(gaps) / len(gaps) == pytest.approx(1.0, abs=0.05)  # still about one a second
    share = redelivered_before_a_kill(gaps, lease_s=lease_s, within_s=running_s)
    assert share < 2 * running_s  # by chance: running_s / the mean gap
