"""Workflows: Python functions or plans, compiled to a LangGraph graph.

```python
@workflow(tools=[lookup_order])
def triage(flow: Flow, email: str) -> dict[str, Any]:
    contact = flow.extract(email, output=Contact)
    intent = flow.classify(email, labels=["refund", "shipping", "other"])
    if intent["label"].result() == "refund":          # control flow waits for a value
        order = flow.call(lookup_order, order_id=contact["order_id"])
    return {"reply": flow.generate(f"Reply to {contact['name']}", context=[contact])["text"]}
```

`triage.compile(dispatcher=...)` returns a LangGraph graph (the functional API's
`@entrypoint`), so `.invoke`, `.stream` and checkpointers work as LangGraph users
expect. A plan compiles through the same path (`Workflow.from_plan`).
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config, get_stream_writer
from langgraph.func import entrypoint
from langgraph.pregel import Pregel

from taskloom.dispatch.base import Dispatcher
from taskloom.errors import InputError, StepSkippedError, TaskloomError
from taskloom.plan import Plan
from taskloom.tools import Tool, ToolRegistry
from taskloom.workflows.flow import Flow

Body = Callable[..., Any]


class Workflow:
    """A named workflow: a Python function of (flow, **inputs), or a plan.

    Args:
        fn: the body; it adds steps through `flow` and returns the output.
        name: the workflow's name (defaults to the function's).
        tools: the Python tools its steps may call.
        plan: set when the workflow was made from a plan.
    """

    def __init__(
        self,
        fn: Body,
        *,
        name: str | None = None,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
        plan: Plan | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.plan = plan
        self.__doc__ = fn.__doc__

    @classmethod
    def from_plan(cls, plan: Plan, *, tools: ToolRegistry | None = None) -> Workflow:
        """A workflow that runs a validated plan's steps eagerly."""

        def run_plan(flow: Flow, **inputs: Any) -> Any:
            for step in plan.order():
                flow.add(step)
            return _Wire(plan.output)

        return cls(run_plan, name="plan", tools=tools or ToolRegistry(), plan=plan)

    def check_inputs(self, inputs: dict[str, Any]) -> None:
        """Raise InputError unless the inputs fit the workflow's parameters."""
        if self.plan is not None:
            return
        params = list(inspect.signature(self.fn).parameters.values())[1:]
        try:
            inspect.Signature(params).bind(**inputs)
        except TypeError as e:
            names = ", ".join(p.name for p in params) or "none"
            raise InputError(f"workflow {self.name!r}: {e} (its inputs: {names})") from e

    def compile(
        self,
        *,
        dispatcher: Dispatcher,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Pregel[Any, Any, Any, Any]:
        """The LangGraph graph that runs this workflow on `dispatcher`.

        Its input is the run's inputs (a JSON object); its value is
        `{"output": ..., "steps": [StepResult, ...]}`; with `stream_mode="custom"` it
        streams `step_started` / `step_finished` events. The run id is the config's
        `thread_id` (a fresh one when there is none). A step that fails fails the run
        with `StepFailedError` after every other branch has finished.
        """

        def body(inputs: dict[str, Any]) -> dict[str, Any]:
            inputs = dict(inputs or {})
            self.check_inputs(inputs)
            run_id = get_config().get("configurable", {}).get("thread_id") or uuid.uuid4().hex
            flow = Flow(
                run_id=str(run_id),
                inputs=inputs,
                dispatcher=dispatcher,
                cancelled=cancelled,
                tools=self.tools,
            )
            error: BaseException | None = None
            try:
                out = self.fn(flow, **({} if self.plan is not None else inputs))
            except TaskloomError as e:
                out, error = None, e
            done, errors = flow.wait()
            if error is None and not errors:
                output = (
                    flow.resolve(out.value, is_wire=True)
                    if isinstance(out, _Wire)
                    else flow.resolve(out)
                )
                return {"output": output, "steps": list(done.values())}
            failure = error or _first_failure(errors)
            get_stream_writer()({"event": "run_failed", "error": str(failure)})
            raise failure

        body.__name__ = self.name  # the graph's name
        return entrypoint(checkpointer=checkpointer)(body)

    def __call__(self, flow: Flow, **inputs: Any) -> Any:
        """Call the body directly, e.g. as a sub-workflow inside another workflow."""
        return self.fn(flow, **inputs)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r})"


class _Wire:
    """A plan's output: JSON whose references are in wire form."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _first_failure(errors: dict[str, BaseException]) -> BaseException:
    """The root failure: a step that failed on its own, not one skipped because of it."""
    for e in errors.values():
        if not isinstance(e, StepSkippedError):
            return e
    return next(iter(errors.values()))


def workflow(
    fn: Body | None = None,
    *,
    name: str | None = None,
    tools: Iterable[Tool | Callable[..., Any]] = (),
) -> Any:
    """Make a function of (flow, **inputs) a Workflow: `@workflow` or `@workflow(tools=[...])`."""

    def wrap(f: Body) -> Workflow:
        return Workflow(f, name=name, tools=ToolRegistry(tools))

    return wrap(fn) if fn is not None else wrap
