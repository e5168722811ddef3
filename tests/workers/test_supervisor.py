"""The box supervisor: N children kept alive, drained on SIGTERM, left down when they
crash-loop, gone with it even when it is SIGKILLed; `drain`, `--max-jobs`."""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskloom.config import Settings
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.step import StepJob, StepResult, StepStatus
from tests.workers.redis_helpers import Spawn, counts, spawn_worker, taskloom, wait_for
from tests.workers.supervisor_helpers import (
    Supervise,
    is_gone,
    live,
    pids,
    stderr_of,
    supervise,
)

__all__ = ["spawn_worker", "supervise"]
CRASH_TOOLS = str(Path(__file__).parent / "crash_tools.py")


def work_job(url: str, run_id: str, step_id: str, sleep_s: float) -> StepJob:
    inputs = {"url": url, "name": step_id, "sleep_s": sleep_s, "value": len(step_id)}
    return StepJob(run_id=run_id, step_id=step_id, kind="tool", tool="work", inputs=inputs)


def dispatcher(url: str) -> RedisDispatcher:
    return RedisDispatcher(url=url, settings=Settings(redis_url=url))


def test_children_are_named_by_box_gpu_and_index(redis_url: str, supervise: Supervise) -> None:
    supervise("--processes", "2", box="b1", ready=2)
    shown = taskloom("workers", "--json", "--redis-url", redis_url)
    assert shown.returncode == 0, shown.stderr
    mine = {w["name"]: w for w in json.loads(shown.stdout) if w["name"].startswith("b1.")}
    assert sorted(mine) == ["b1.cpu.0", "b1.cpu.1"]
    assert [(w["box"], w["gpu"], w["index"]) for _, w in sorted(mine.items())] == [
        ("b1", "-", "0"),
        ("b1", "-", "1"),
    ]


def test_the_supervisor_keeps_n_children_alive_across_sigkills(
    redis_url: str, supervise: Supervise
) -> None:
    supervise("--processes", "2", box="b2", ready=2)
    for round_ in range(3):
        before = pids(redis_url, "b2")
        assert len(before) == 2
        victim = sorted(before)[round_ % 2]
        os.kill(before[victim], signal.SIGKILL)
        wait_for(
            lambda v=victim, old=before[victim]: pids(redis_url, "b2").get(v, old) != old,
            timeout_s=30,
            what=f"{victim} to be restarted",
        )
    after = pids(redis_url, "b2")
    assert len(after) == 2 and not any(is_gone(p) for p in after.values())
    d = dispatcher(redis_url)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(d.dispatch, [work_job(redis_url, "s2", f"j{i}", 0) for i in range(4)])
        )
    assert all(r.status == StepStatus.DONE for r in results)


def test_sigterm_drains_every_child_and_the_running_step_finishes(
    redis_url: str, supervise: Supervise
) -> None:
    sup = supervise("--processes", "2", box="b3", ready=2)
    children = pids(redis_url, "b3")
    result: list[StepResult] = []
    job = work_job(redis_url, "s3", "long", 1.0)
    t = threading.Thread(target=lambda: result.append(dispatcher(redis_url).dispatch(job)))
    t.start()
    wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
    sup.send_signal(signal.SIGTERM)
    code, err = stderr_of(sup)
    assert code == 0, err
    t.join(timeout=10)
    assert result and result[0].status == StepStatus.DONE
    assert counts(redis_url, "test:executed") == {"long": 1}
    assert all(is_gone(p) for p in children.values())
    assert not live(redis_url, "b3.")


def test_a_second_sigterm_puts_the_running_step_back(
    redis_url: str, supervise: Supervise, spawn_worker: Spawn
) -> None:
    sup = supervise("--processes", "1", box="b4", ready=1)
    result: list[StepResult] = []
    job = work_job(redis_url, "s4", "slow", 3.0)
    t = threading.Thread(target=lambda: result.append(dispatcher(redis_url).dispatch(job)))
    t.start()
    wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
    sup.send_signal(signal.SIGTERM)
    threading.Event().wait(0.3)  # the first is passed on before the second arrives
    sup.send_signal(signal.SIGTERM)
    code, err = stderr_of(sup)
    assert code == 0, err
    assert counts(redis_url, "test:executed") == {}  # stopped, put back: not finished
    spawn_worker()
    t.join(timeout=30)
    assert result and result[0].status == StepStatus.DONE
    assert counts(redis_url, "test:executed") == {"slow": 1}


def test_a_crash_looping_child_is_left_down_with_one_line_saying_why(
    tmp_path: Path, redis_url: str, supervise: Supervise
) -> None:
    crash_log = tmp_path / "starts.log"
    env = {"CRASH_LOG": str(crash_log), "TASKLOOM_CRASH_LOOP_EXITS": "3"}
    sup = supervise("--processes", "1", "--tools", CRASH_TOOLS, box="b5", env=env)
    code, err = stderr_of(sup, timeout_s=60)
    assert code == 1
    assert len(crash_log.read_text().splitlines()) == 3  # started, restarted twice, left down
    lines = [ln for ln in err.splitlines() if "crash-looped" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("taskloom: error: worker b5.cpu.0 crash-looped (3 exits")
    assert "exit 4" in lines[0] and "the tools backend is unreachable" in lines[0]
    assert "Traceback" not in err


def test_children_exit_with_the_supervisor_even_when_it_is_sigkilled(
    redis_url: str, supervise: Supervise
) -> None:
    sup = supervise("--processes", "2", box="b6", ready=2)
    children = pids(redis_url, "b6")
    sup.send_signal(signal.SIGKILL)
    sup.wait(timeout=10)
    for pid in children.values():
        wait_for(lambda p=pid: is_gone(p), timeout_s=30, what=f"child {pid} to exit")
    wait_for(lambda: not live(redis_url, "b6."), what="the children to deregister")


def test_drain_stops_one_child_for_good_and_the_supervisor_exits_once_all_are_drained(
    redis_url: str, supervise: Supervise
) -> None:
    sup = supervise("--processes", "2", box="b7", ready=2)
    before = pids(redis_url, "b7")
    told = taskloom("drain", "b7.cpu.0", "--redis-url", redis_url)
    assert told.returncode == 0, told.stderr
    assert told.stdout.split() == ["draining", "b7.cpu.0"]
    wait_for(lambda: is_gone(before["b7.cpu.0"]), what="the drained child to exit")
    wait_for(lambda: list(live(redis_url, "b7.")) == ["b7.cpu.1"], what="it to deregister")
    threading.Event().wait(1.0)  # time enough for a restart, were there one
    assert list(pids(redis_url, "b7")) == ["b7.cpu.1"]  # not restarted
    assert sup.poll() is None
    everyone = taskloom("drain", "--all", "--queue", "slm", "--redis-url", redis_url)
    assert everyone.returncode == 0, everyone.stderr
    code, err = stderr_of(sup)
    assert code == 0, err


def test_drain_finishes_the_current_step_then_takes_no_more(
    redis_url: str, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--name", "solo")
    result: list[StepResult] = []
    job = work_job(redis_url, "s8", "long", 1.0)
    t = threading.Thread(target=lambda: result.append(dispatcher(redis_url).dispatch(job)))
    t.start()
    wait_for(lambda: counts(redis_url, "test:started"), what="the step to start")
    assert taskloom("drain", "solo", "--redis-url", redis_url).returncode == 0
    assert worker.wait(timeout=20) == 0
    t.join(timeout=10)
    assert result and result[0].status == StepStatus.DONE and result[0].worker == "solo"
    assert counts(redis_url, "test:executed") == {"long": 1}


def test_max_jobs_recycles_a_standalone_worker_with_exit_0(
    redis_url: str, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--max-jobs", "2")
    d = dispatcher(redis_url)
    first = [d.dispatch(work_job(redis_url, "s9", f"j{i}", 0)) for i in range(2)]
    assert worker.wait(timeout=20) == 0
    assert all(r.status == StepStatus.DONE for r in first)
    assert counts(redis_url, "test:executed") == {"j0": 1, "j1": 1}


def test_max_jobs_under_the_supervisor_is_a_fresh_process_and_no_crash(
    redis_url: str, supervise: Supervise
) -> None:
    env = {"TASKLOOM_CRASH_LOOP_EXITS": "1"}  # a single crash would leave the child down
    sup = supervise("--processes", "1", "--max-jobs", "2", box="b10", env=env, ready=1)
    d = dispatcher(redis_url)
    seen: set[int] = set()
    for i in range(6):
        seen |= set(pids(redis_url, "b10").values())
        assert d.dispatch(work_job(redis_url, "s10", f"j{i}", 0)).status == StepStatus.DONE
    wait_for(lambda: pids(redis_url, "b10"), what="the last fresh child")
    seen |= set(pids(redis_url, "b10").values())
    assert len(seen) >= 3  # 6 jobs, 2 per process
    assert sup.poll() is None


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--processes", "0"], {}, "--processes 0: a box needs at least 1 worker process"),
        (["--gpus", "all"], {}, "--force-reinstall --no-cache-dir"),
        (["--gpus", "0,x"], {}, "--gpus '0,x' is not a GPU list"),
        (["--gpus", "5"], {"CUDA_VISIBLE_DEVICES": "0,1"}, "GPU 5 is not on this box"),
        (["--gpu", "0"], {}, 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall'),
        (["--n-gpu-layers", "8"], {}, "--n-gpu-layers 8 (TASKLOOM_N_GPU_LAYERS) needs"),
        ([], {"TASKLOOM_GPU": "0"}, "--gpu 0 (TASKLOOM_GPU) needs a llama.cpp build"),
        (["--gpus", "0", "--gpu", "1"], {}, "pass --gpus (one worker per GPU) or --gpu"),
    ],
)
def test_bad_worker_input_is_one_line_and_exit_2(
    redis_url: str, taskloom_home: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    done = taskloom("worker", "--model", "scripted", "--redis-url", redis_url, *args, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


def test_a_flag_overrides_the_environment_only_when_given(
    redis_url: str, spawn_worker: Spawn
) -> None:
    env = {"TASKLOOM_N_GPU_LAYERS": "8"}
    refused = taskloom("worker", "--model", "scripted", "--redis-url", redis_url, env=env)
    assert refused.returncode == 2 and "TASKLOOM_N_GPU_LAYERS" in refused.stderr
    worker = spawn_worker("--n-gpu-layers", "0", env=env)  # 0: the CPU; it registered
    assert worker.poll() is None


def test_drain_of_an_unknown_worker_is_one_line_and_exit_2(redis_url: str) -> None:
    done = taskloom("drain", "nobody", "--redis-url", redis_url)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "taskloom: error: no live worker named 'nobody'; list them with taskloom workers"
    )
    bare = taskloom("drain", "--redis-url", redis_url)
    assert bare.returncode == 2 and "--all" in bare.stderr
