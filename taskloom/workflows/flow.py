"""Inside a running workflow: the Flow that adds steps, and StepHandle, a step's future.

Every step, whether written in Python or read from a plan, becomes a plan `Step` whose
inputs hold references, and runs as one LangGraph `@task`. Steps are added in a
topological order (a step can only reference steps added before it), so LangGraph's
task ids are the same on every replay and a resumed run reuses each finished step.
A task waits for its own dependencies only: eager scheduling, no superstep barrier.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any, Literal, cast

from langgraph.config import get_stream_writer
from langgraph.func import task
from pydantic import BaseModel

from taskloom.dispatch.base import Dispatcher
from taskloom.errors import (
    PlanValidationError,
    RunCancelledError,
    StepFailedError,
    StepSkippedError,
    TaskloomError,
)
from taskloom.logs import get_logger
from taskloom.plan import STEP_ID, Ref, Step, lookup, references, resolve
from taskloom.step import ErrorInfo, StepJob, StepResult, StepStatus
from taskloom.tools import Tool, ToolRegistry
from taskloom.tools.registry import OUTPUT_MODEL_KEY, model_name

log = get_logger(__name__)


class StepHandle:
    """A step's output before it exists. Index it to point into the output.

    Pass handles as inputs to other steps (that makes a dependency), format them into
    strings (`f"Reply to {contact['name']}"`), or call `.result()` to wait for the value
    when control flow needs it.
    """

    def __init__(self, flow: Flow, ref: Ref) -> None:
        self._flow = flow
        self.ref = ref

    def __getitem__(self, key: str | int) -> StepHandle:
        return StepHandle(self._flow, Ref(root=self.ref.root, path=(*self.ref.path, key)))

    def result(self) -> Any:
        """Wait for the value. Raises StepFailedError if the step failed."""
        return self._flow.value_of(self.ref)

    def __str__(self) -> str:
        return "${" + str(self.ref)[1:] + "}"

    def __repr__(self) -> str:
        return f"StepHandle({self.ref})"


def to_wire(value: Any) -> Any:
    """Python values with handles → plan JSON with references (literal `$` escaped)."""
    if isinstance(value, StepHandle):
        return str(value.ref)
    if isinstance(value, str):
        return "$" + value if value.startswith("$") else value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


class Flow:
    """Adds steps to a run and tracks their futures. One per run.

    The SLM step methods (`extract`, `fill_slots`, `filter`, `classify`, `generate`)
    take `**options`: the step's own fields (`id`, `after`, `queue`, `model`,
    `timeout_s`) and the kind's optional inputs, e.g. `examples=` (few-shot pairs),
    `max_tokens=`, `copy=` (verbatim spans, `extract` and `fill_slots`), `absence=`,
    `top_k=` and `threshold=` (`filter`), `grounded=` (`generate`); see
    docs/plan-format.md. An unknown option is refused when the step runs, naming the
    kind's inputs. `output=` of `extract` (and `step`) may be a pydantic model: its
    validators then run in the re-ask loop, their messages sent back to the model.
    """

    def __init__(
        self,
        *,
        run_id: str,
        inputs: dict[str, Any],
        dispatcher: Dispatcher,
        cancelled: threading.Event | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.run_id = run_id
        self.inputs = inputs
        self.dispatcher = dispatcher
        self.tools = tools
        """The workflow's registry: pydantic output models are registered there."""
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.steps: dict[str, Step] = {}
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        self._auto_ids: Counter[str] = Counter()

    @property
    def input(self) -> StepHandle:
        """The run's inputs, as a handle: `flow.input["email"]` is `$input.email`."""
        return StepHandle(self, Ref(root="input"))

    # -- adding steps ---------------------------------------------------------------

    def add(self, step: Step) -> StepHandle:
        """Add a plan step; its references must point at steps already added."""
        problems = []
        if step.id in self.steps:
            problems.append(f"step {step.id!r}: duplicate id")
        if not STEP_ID.match(step.id):
            problems.append(f"step {step.id!r}: id must match ^[a-z][a-z0-9_]{{0,63}}$")
        problems += [
            f"step {step.id!r}: depends on unknown step {d!r}"
            for d in step.dependencies()
            if d not in self._futures
        ]
        if problems:
            raise PlanValidationError(problems)
        deps = {d: self._futures[d] for d in step.dependencies()}
        self.steps[step.id] = step
        get_stream_writer()(
            {
                "event": "step_added",
                "run_id": self.run_id,
                "step_id": step.id,
                "kind": step.kind,
                "depends_on": list(deps),
                "inputs": step.inputs,
            }
        )
        self._futures[step.id] = _run_step(_StepCall(self, step, deps))
        return StepHandle(self, Ref(root=step.id))

    def step(
        self,
        kind: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        output: dict[str, Any] | type[BaseModel] | None = None,
        tool: str | None = None,
        after: Sequence[StepHandle | str] = (),
        queue: str | None = None,
        model: str | None = None,
        timeout_s: float | None = None,
        review: Literal["always", "uncertain", "never"] | None = None,
        review_timeout_s: float | None = None,
    ) -> StepHandle:
        """Add a step of any kind. Handles in `inputs` become references.

        `timeout_s` bounds each attempt (default `Settings.step_timeout_s`); `review`
        asks a person to approve the value (docs/review.md)."""
        if isinstance(output, type) and issubclass(output, BaseModel):
            output = self._output_schema(output)
        step = Step(
            id=id or self._next_id(tool or kind),
            kind=kind,
            inputs=to_wire(dict(inputs or {})),
            output=output,
            tool=tool,
            after=[a.ref.root if isinstance(a, StepHandle) else a for a in after],
            queue=queue,
            model=model,
            timeout_s=timeout_s,
            review=review,
            review_timeout_s=review_timeout_s,
        )
        return self.add(step)

    def _output_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        """The model's JSON schema, naming the model so that its validators run in the
        re-ask loop where it is registered: in the workflow's tools (what an inline run
        executes with), and on workers whose `--tools` modules define it."""
        if self.tools is not None:
            self.tools.add_model(model)
        return {**model.model_json_schema(), OUTPUT_MODEL_KEY: model_name(model)}

    def _next_id(self, base: str) -> str:
        self._auto_ids[base] += 1
        n = self._auto_ids[base]
        return base if n == 1 else f"{base}_{n}"

    def extract(
        self, text: Any, *, output: dict[str, Any] | type[BaseModel], **options: Any
    ) -> StepHandle:
        """Extract the fields of `output` (a JSON schema or pydantic model) from `text`."""
        return self._slm("extract", {"text": text}, output=output, **options)

    def fill_slots(self, text: Any, slots: Mapping[str, str], **options: Any) -> StepHandle:
        """Fill named slots (name → description); the output lists the missing ones."""
        return self._slm("fill_slots", {"text": text, "slots": dict(slots)}, **options)

    def filter(self, query: Any, passages: Any, **options: Any) -> StepHandle:
        """Keep the passages relevant to `query` (options: top_k)."""
        return self._slm("filter", {"query": query, "passages": passages}, **options)

    def classify(self, text: Any, labels: Sequence[str] | Any, **options: Any) -> StepHandle:
        """Pick one of `labels`, with a confidence from the token probabilities."""
        return self._slm("classify", {"text": text, "labels": labels}, **options)

    def generate(self, instruction: Any, context: Any = None, **options: Any) -> StepHandle:
        """Write a short text following `instruction`, drawing on `context`."""
        return self._slm("generate", {"instruction": instruction, "context": context}, **options)

    def call(
        self,
        tool: Tool | str,
        /,
        *,
        id: str | None = None,
        timeout_s: float | None = None,
        **arguments: Any,
    ) -> StepHandle:
        """Call a registered Python tool with keyword arguments (handles allowed)."""
        name = tool.name if isinstance(tool, Tool) else tool
        return self.step("tool", arguments, id=id, tool=name, timeout_s=timeout_s)

    _STEP_OPTIONS = (
        "id",
        "output",
        "after",
        "queue",
        "model",
        "timeout_s",
        "review",
        "review_timeout_s",
    )

    def _slm(self, kind: str, inputs: dict[str, Any], **options: Any) -> StepHandle:
        step_options = {k: options.pop(k) for k in self._STEP_OPTIONS if k in options}
        return self.step(kind, {**inputs, **options}, **step_options)

    # -- waiting for results --------------------------------------------------------

    def value_of(self, ref: Ref) -> Any:
        """Wait for the step a reference points at, and return the value."""
        results = (
            {} if ref.root == "input" else {ref.root: self._future(ref.root).result()["value"]}
        )
        return lookup(ref, inputs=self.inputs, results=results)

    def resolve(self, value: Any, *, is_wire: bool = False) -> Any:
        """Python values with handles (or plan JSON, `is_wire`) → values; waits as needed."""
        wire = value if is_wire else to_wire(value)
        roots = {r.root for r in references(wire) if r.root != "input"}
        results = {root: self._future(root).result()["value"] for root in roots}
        return resolve(wire, inputs=self.inputs, results=results)

    def _future(self, step_id: str) -> Future[dict[str, Any]]:
        if step_id not in self._futures:
            raise PlanValidationError([f"reference to unknown step {step_id!r}"])
        return self._futures[step_id]

    def wait(self) -> tuple[dict[str, dict[str, Any]], dict[str, BaseException]]:
        """Wait for every step; return the results of those that finished, and the errors."""
        wait(list(self._futures.values()))
        done: dict[str, dict[str, Any]] = {}
        errors: dict[str, BaseException] = {}
        for step_id, fut in self._futures.items():
            if (e := fut.exception()) is not None:
                errors[step_id] = e
            else:
                done[step_id] = fut.result()
        return done, errors


class _StepCall:
    """One step's work inside its LangGraph task: wait for deps, resolve, dispatch."""

    def __init__(self, flow: Flow, step: Step, deps: dict[str, Future[dict[str, Any]]]) -> None:
        self.flow = flow
        self.step = step
        self.deps = deps

    def run(self, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        flow, step = self.flow, self.step
        ids = {"run_id": flow.run_id, "step_id": step.id}
        results: dict[str, Any] = {}
        for dep, fut in self.deps.items():
            try:
                results[dep] = fut.result()["value"]
            except RunCancelledError:
                self._end(emit, StepStatus.CANCELLED, "cancelled before it started")
                raise
            except BaseException as e:
                self._end(emit, StepStatus.SKIPPED, f"skipped: step {dep!r} did not finish")
                raise StepSkippedError(f"skipped because step {dep!r} failed", **ids) from e
        if flow.cancelled.is_set():
            self._end(emit, StepStatus.CANCELLED, "cancelled before it started")
            raise RunCancelledError("the run was cancelled", **ids)
        try:
            inputs = resolve(step.inputs, inputs=flow.inputs, results=results)
        except TaskloomError as e:
            self._end(emit, StepStatus.FAILED, str(e))
            raise StepFailedError(str(e), **ids) from e
        job = StepJob(
            run_id=flow.run_id,
            step_id=step.id,
            kind=step.kind,
            inputs=inputs,
            output=step.output,
            tool=step.tool,
            queue=step.queue,
            model=step.model,
            timeout_s=step.timeout_s,
            review=step.review,
            review_timeout_s=step.review_timeout_s,
        )
        emit({"event": "step_started", **ids, "kind": step.kind, "at": time.time()})
        log.debug("step_started", kind=step.kind, **ids)
        try:
            result = flow.dispatcher.dispatch(job)
        except RunCancelledError:
            self._end(emit, StepStatus.CANCELLED, "cancelled while it ran", attempts=1)
            raise
        dumped = result.model_dump(mode="json")
        emit({"event": "step_finished", **ids, "kind": step.kind, "result": dumped})
        log.info("step_finished", status=result.status.value, run_ms=round(result.run_ms, 2), **ids)
        if result.status != StepStatus.DONE:
            why = result.error.message if result.error else "unknown error"
            raise StepFailedError(
                f"failed after {result.attempts} attempt(s): {why}",
                raw_output=result.error.raw_output if result.error else None,
                **ids,
            )
        return dumped

    def _end(
        self,
        emit: Callable[[dict[str, Any]], None],
        status: StepStatus,
        why: str,
        *,
        attempts: int = 0,
    ) -> None:
        result = StepResult(
            run_id=self.flow.run_id,
            step_id=self.step.id,
            status=status,
            attempts=attempts,
            error=ErrorInfo(type=status.value, message=why),
            finished_at=time.time(),
        )
        emit(
            {
                "event": "step_finished",
                "run_id": self.flow.run_id,
                "step_id": self.step.id,
                "kind": self.step.kind,
                "result": result.model_dump(mode="json"),
            }
        )


def _step_body(call: _StepCall) -> dict[str, Any]:
    return call.run(get_stream_writer())


# Every step is the same LangGraph task; its id comes from the order steps are added in.
_run_step = cast(
    "Callable[[_StepCall], Future[dict[str, Any]]]",
    task(name="taskloom_step")(_step_body),  # type: ignore[arg-type]  # LangGraph stub: ParamSpec
)
