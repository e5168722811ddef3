"""Model residency: the model loads once per process, and a job costs little beyond inference.

    python benchmarks/bench_residency.py

Runs 20 `extract` jobs through the inline dispatcher (the code path every worker
shares: `execute` → `run_task` → the resident host), then prints:
1. how many times a model was loaded (target: exactly 1) and the load time;
2. per-job overhead beyond inference: the job's wall time minus the time spent inside
   the model's `complete` calls (target ≤ 5 ms), beside the inference time itself.

Real: the default GGUF model, the inline dispatcher's execute path. Simulated: nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import results

from taskloom.chat import Completion, Message, load
from taskloom.chat.llama import host as host_module
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.step import StepJob

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": ["string", "null"]}, "order_id": {"type": ["string", "null"]}},
    "required": ["name", "order_id"],
}
JOBS = 20


class Timed:
    """Wraps the host and adds up the time spent inside it."""

    def __init__(self, inner: host_module.ModelHost) -> None:
        self.inner = inner
        self.model_s = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        started = time.perf_counter()
        try:
            return self.inner.complete(messages, **options)
        finally:
            self.model_s += time.perf_counter() - started

    def score(self, messages: Sequence[Message], continuations: Sequence[str]) -> list[float]:
        return self.inner.score(messages, continuations)


def main() -> None:
    loads: list[float] = []
    real_init = host_module.ModelHost.__init__

    def counting_init(self: host_module.ModelHost, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        loads.append(self.load_s)

    host_module.ModelHost.__init__ = counting_init  # type: ignore[method-assign]
    timed: list[Timed] = []

    def factory() -> Timed:
        timed.append(Timed(load.default_host(Settings())))
        return timed[-1]

    dispatcher = InlineDispatcher(model=factory, settings=Settings())
    overheads, inference = [], []
    for i in range(JOBS + 1):
        job = StepJob(
            run_id="bench",
            step_id=f"s{i}",
            kind="extract",
            inputs={"text": f"Order {5000 + i} from Ann Lee is late.", "max_tokens": 40},
            output=SCHEMA,
        )
        before = timed[0].model_s if timed else 0.0
        started = time.perf_counter()
        result = dispatcher.dispatch(job)
        wall = time.perf_counter() - started
        assert result.status == "done", result.error
        if i == 0:
            continue  # the first job also loads the model
        spent = timed[0].model_s - before
        overheads.append((wall - spent) * 1000)
        inference.append(spent * 1000)
    dispatcher.close()

    print(f"model loads in this process: {len(loads)} (load {loads[0]:.2f} s)")
    print(f"{JOBS} jobs after the first:   inference p50 {statistics.median(inference):.1f} ms")
    print(
        f"overhead beyond inference:  p50 {statistics.median(overheads):.2f} ms,"
        f" max {max(overheads):.2f} ms"
    )
    ok = len(loads) == 1 and statistics.median(overheads) <= 5.0
    print(f"target: 1 load and overhead <= 5 ms -> {'met' if ok else 'NOT met'}")
    results.record(
        "bench_residency",
        real="the default GGUF model; the inline dispatcher's execute → run_task → host path",
        simulated="nothing",
        rows=[
            results.Row(
                what="model loads per process; overhead per job beyond inference",
                measured=f"{len(loads)} load; {statistics.median(overheads):.2f} ms p50 "
                f"({max(overheads):.1f} ms max)",
                target="1; ≤ 5 ms",
                met=ok,
            )
        ],
    )


if __name__ == "__main__":
    main()
