"""Eager scheduling and scheduler overhead, measured side by side in one run.

    python benchmarks/bench_scheduler.py

1. Makespan ÷ critical path on an unbalanced DAG of sleeping steps (target ≤ 1.10),
   beside the same DAG run superstep by superstep on a LangGraph StateGraph.
2. Scheduler overhead per no-op step, 1,000 steps in one run with the inline
   dispatcher (target ≤ 1 ms), beside bare LangGraph `@task`s doing nothing.
"""

from __future__ import annotations

import operator
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import results
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph

from taskloom import InlineDispatcher, Plan, Settings, Workflow, load_plan, run, tool
from taskloom.cli import configure_logging
from taskloom.tools import ToolRegistry
from taskloom.workflows import sqlite_checkpointer
from taskloom.workflows.runner import run as run_workflow

# id → (seconds, dependencies): three branches of different shapes
DAG: dict[str, tuple[float, list[str]]] = {
    "a1": (0.30, []),
    "a2": (0.30, ["a1"]),
    "b1": (0.05, []),
    "b2": (0.05, ["b1"]),
    "b3": (0.05, ["b2"]),
    "b4": (0.05, ["b3"]),
    "b5": (0.40, ["b4"]),
    "c1": (0.10, []),
    "c2": (0.45, ["c1"]),
    "join": (0.05, ["a2", "b5", "c2"]),
}


@tool
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@tool
def noop() -> None:
    return None


def critical_path(dag: dict[str, tuple[float, list[str]]]) -> float:
    finish: dict[str, float] = {}
    for sid, (seconds, deps) in dag.items():  # written in topological order
        finish[sid] = seconds + max((finish[d] for d in deps), default=0.0)
    return max(finish.values())


def dag_plan() -> Plan:
    steps = [
        {"id": sid, "kind": "tool", "tool": "sleep", "inputs": {"seconds": s}, "after": deps}
        for sid, (s, deps) in DAG.items()
    ]
    return load_plan({"version": 1, "steps": steps, "output": "$join"})


def eager_makespan(settings: Settings) -> float:
    wf = Workflow.from_plan(dag_plan(), tools=ToolRegistry([sleep]))
    started = time.perf_counter()
    record = run(wf, {}, dispatcher=InlineDispatcher(tools=wf.tools), settings=settings)
    assert record.status == "done", record.error
    return time.perf_counter() - started


def superstep_makespan() -> float:
    """The same DAG on LangGraph's graph API, where a node waits for its whole superstep."""

    class State(TypedDict):
        done: Annotated[list[str], operator.add]

    graph = StateGraph(State)
    for sid, (seconds, _) in DAG.items():
        graph.add_node(sid, lambda state, s=seconds, i=sid: (time.sleep(s), {"done": [i]})[1])
    for sid, (_, deps) in DAG.items():
        if deps:
            graph.add_edge(deps if len(deps) > 1 else deps[0], sid)
        else:
            graph.add_edge(START, sid)
    graph.add_edge("join", END)
    compiled = graph.compile()
    started = time.perf_counter()
    compiled.invoke({"done": []})
    return time.perf_counter() - started


def overhead_ms_per_step(n: int, settings: Settings, *, durable: bool) -> float:
    steps = [{"id": f"s{i}", "kind": "tool", "tool": "noop", "inputs": {}} for i in range(n)]
    wf = Workflow.from_plan(
        load_plan({"version": 1, "steps": steps}, max_steps=n), tools=ToolRegistry([noop])
    )
    dispatcher = InlineDispatcher(tools=wf.tools, settings=settings)
    with tempfile.TemporaryDirectory() as d:
        if durable:
            with sqlite_checkpointer(Path(d) / "runs.sqlite") as cp:
                started = time.perf_counter()
                record = run_workflow(
                    wf, {}, dispatcher=dispatcher, settings=settings, checkpointer=cp
                )
        else:  # the scheduler alone: no checkpointer (the public `run` always keeps one)
            started = time.perf_counter()
            record = run_workflow(wf, {}, dispatcher=dispatcher, settings=settings)
        elapsed = time.perf_counter() - started
    assert record.status == "done" and len(record.steps) == n
    return elapsed * 1000 / n


def bare_langgraph_ms_per_task(n: int, settings: Settings) -> float:
    @task
    def nothing(i: int) -> int:
        return i

    @entrypoint()
    def main(_: Any) -> list[int]:
        futures = [nothing(i) for i in range(n)]
        return [f.result() for f in futures]

    started = time.perf_counter()
    main.invoke({}, {"max_concurrency": settings.max_concurrency + 1})
    return (time.perf_counter() - started) * 1000 / n


def main() -> None:
    configure_logging(verbose=0, is_json=False)  # as the CLI does: warnings only
    settings = Settings()
    eager_makespan(settings)  # warm up imports and threads
    cp = critical_path(DAG)
    eager = min(eager_makespan(settings) for _ in range(3))
    superstep = superstep_makespan()
    print(f"critical path {cp:.3f}s")
    print(f"eager (taskloom)     makespan {eager:.3f}s  ratio {eager / cp:.3f}  (target ≤ 1.10)")
    print(f"superstep (StateGraph) makespan {superstep:.3f}s  ratio {superstep / cp:.3f}")

    n = 1000
    bare_langgraph_ms_per_task(n, settings)
    bare = min(bare_langgraph_ms_per_task(n, settings) for _ in range(3))
    ours = min(overhead_ms_per_step(n, settings, durable=False) for _ in range(3))
    durable = min(overhead_ms_per_step(n, settings, durable=True) for _ in range(2))
    print(f"overhead per no-op step, {n} steps, inline dispatcher:")
    print(f"  taskloom, in-memory        {ours:.3f} ms/step  (target ≤ 1 ms)")
    print(f"  taskloom, SQLite checkpoints {durable:.3f} ms/step")
    print(f"  bare LangGraph @task       {bare:.3f} ms/step  (taskloom ÷ bare: {ours / bare:.2f}×)")
    results.record(
        "bench_scheduler",
        real="taskloom's scheduler, LangGraph, SQLite checkpoints, the inline dispatcher",
        simulated="step work: fixed sleeps (the DAG) and no-op tools (the overhead)",
        rows=[
            results.Row(
                what="eager makespan ÷ critical path, unbalanced DAG",
                measured=f"{eager / cp:.2f} (the same DAG superstep by superstep on a "
                f"StateGraph: {superstep / cp:.2f})",
                target="≤ 1.10",
                met=eager / cp <= 1.10,
            ),
            results.Row(
                what=f"scheduler overhead per no-op step, {n:,} steps, inline",
                measured=f"{ours:.2f} ms (SQLite checkpoints: {durable:.2f} ms; bare "
                f"LangGraph task: {bare:.2f} ms)",
                target="≤ 1 ms",
                met=ours <= 1.0,
            ),
        ],
    )


if __name__ == "__main__":
    main()
