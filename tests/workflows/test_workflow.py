"""Python workflows and plans on the same path: eager steps, merging, failures, LangGraph."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from taskloom import (
    Flow,
    InlineDispatcher,
    RunStatus,
    ScriptedChatModel,
    Settings,
    StepStatus,
    Workflow,
    load_plan,
    run,
    tool,
    workflow,
)
from taskloom.errors import InputError, PlanValidationError

FAST = Settings(retry_backoff_s=0.01)


@tool
def pause(seconds: float, tag: str) -> dict[str, Any]:
    time.sleep(seconds)
    return {"tag": tag}


@tool
def explode(tag: str) -> None:
    raise RuntimeError(f"{tag} exploded")


def run_inline(wf: Workflow, inputs: dict[str, Any], model: ScriptedChatModel | None = None) -> Any:
    dispatcher = InlineDispatcher(model=model or ScriptedChatModel(), tools=wf.tools, settings=FAST)
    return run(wf, inputs, dispatcher=dispatcher, settings=FAST)


class Contact(BaseModel):
    name: str
    order_id: str | None


def test_python_workflow_merges_each_step_once_and_resolves_output() -> None:
    @workflow
    def triage(flow: Flow, email: str) -> dict[str, Any]:
        contact = flow.extract(email, output=Contact)
        intent = flow.classify(email, labels=["refund", "other"])
        reply = flow.generate(
            f"Write to {contact['name']} about {intent['label']}", context=contact
        )
        return {"who": contact["name"], "reply": reply["text"], "label": intent["label"]}

    def respond(messages: Any, schema: dict[str, Any] | None) -> Any:
        fields = set((schema or {}).get("properties", {}))  # steps run concurrently
        if "label" in fields:
            return {"label": "refund"}
        return {"name": "Ada", "order_id": None} if "name" in fields else {"text": "Dear Ada"}

    model = ScriptedChatModel(respond=respond)
    record = run_inline(triage, {"email": "I am Ada, refund please"}, model)

    assert record.status == RunStatus.DONE
    assert record.output == {"who": "Ada", "reply": "Dear Ada", "label": "refund"}
    assert [s.id for s in record.steps] == ["extract", "classify", "generate"]
    assert all(s.status == StepStatus.DONE and s.attempts == 1 for s in record.steps)
    # the generate prompt saw the resolved name and label, not the references
    generate_prompt = model.calls[-1][0][-1]["content"]
    assert "Write to Ada about refund" in generate_prompt
    assert record.totals.steps == 3 and record.totals.prompt_tokens > 0


def test_plan_runs_through_the_same_path() -> None:
    plan = load_plan(
        {
            "version": 1,
            "steps": [
                {
                    "id": "a",
                    "kind": "tool",
                    "tool": "pause",
                    "inputs": {"seconds": 0, "tag": "$input.t"},
                },
                {
                    "id": "b",
                    "kind": "tool",
                    "tool": "pause",
                    "inputs": {"seconds": 0, "tag": "${a.tag}!"},
                },
            ],
            "output": {"final": "$b.tag", "price": "$$5"},
        }
    )
    wf = Workflow.from_plan(plan, tools=Workflow(lambda f: None, tools=[pause]).tools)
    record = run_inline(wf, {"t": "hi"})
    assert record.output == {"final": "hi!", "price": "$5"}
    assert record.plan is not None and record.plan["steps"][0]["id"] == "a"


def test_a_step_starts_when_its_own_dependencies_finish() -> None:
    @workflow(tools=[pause])
    def unbalanced(flow: Flow) -> Any:
        slow = flow.call(pause, seconds=0.6, tag="slow", id="slow")
        fast = flow.call(pause, seconds=0.0, tag="fast", id="fast")
        after_fast = flow.call(pause, seconds=0.0, tag=fast["tag"], id="after_fast")
        return [slow["tag"], after_fast["tag"]]

    record = run_inline(unbalanced, {})
    steps = {s.id: s for s in record.steps}
    assert record.output == ["slow", "fast"]
    # no superstep barrier: after_fast finished while slow was still running
    assert steps["after_fast"].finished_at is not None and steps["slow"].finished_at is not None
    assert steps["after_fast"].finished_at < steps["slow"].finished_at - 0.3


def test_a_failed_step_fails_the_run_and_keeps_every_other_result() -> None:
    @workflow(tools=[pause, explode])
    def partial(flow: Flow) -> Any:
        ok = flow.call(pause, seconds=0.0, tag="ok", id="ok")
        bad = flow.call(explode, tag="bad", id="bad")
        flow.call(pause, seconds=0.0, tag=bad["tag"], id="downstream")
        late = flow.call(pause, seconds=0.2, tag="late", id="late")
        return [ok, late]

    record = run_inline(partial, {})
    steps = {s.id: s for s in record.steps}
    assert record.status == RunStatus.FAILED
    assert record.error is not None and "bad exploded" in record.error.message
    assert steps["bad"].status == StepStatus.FAILED and steps["bad"].attempts == 3
    assert steps["downstream"].status == StepStatus.SKIPPED
    assert steps["ok"].value == {"tag": "ok"} and steps["late"].value == {"tag": "late"}


def test_output_validation_failure_carries_the_raw_output() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    @workflow
    def count(flow: Flow) -> Any:
        return flow.extract("three apples", output=schema)

    model = ScriptedChatModel(respond=lambda m, s: '{"n": "three"}')
    record = run_inline(count, {}, model)
    step = record.steps[0]
    assert record.status == RunStatus.FAILED
    assert step.attempts == 1  # not retried as a crash: the re-asks happened inside the kind
    assert step.error is not None and step.error.raw_output == '{"n": "three"}'
    assert len(model.calls) == 3  # the first ask and two re-asks


def test_wrong_inputs_and_invalid_steps_are_user_errors() -> None:
    @workflow
    def needs_email(flow: Flow, email: str) -> Any:
        return flow.generate(email)

    with pytest.raises(InputError, match="missing a required argument: 'email'"):
        run_inline(needs_email, {"mail": "x"})

    @workflow
    def duplicate(flow: Flow) -> Any:
        flow.generate("x", id="same")
        return flow.generate("y", id="same")

    record_error = None
    try:
        run_inline(duplicate, {})
    except PlanValidationError as e:
        record_error = e
    assert record_error is not None and "step 'same': duplicate id" in str(record_error)


def test_compiles_to_a_langgraph_graph_with_invoke_stream_and_checkpointer() -> None:
    @workflow(tools=[pause])
    def two(flow: Flow, tag: str) -> Any:
        a = flow.call(pause, seconds=0, tag=tag)
        return flow.call(pause, seconds=0, tag=a["tag"])["tag"]

    graph = two.compile(dispatcher=InlineDispatcher(tools=two.tools), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    value = graph.invoke({"tag": "x"}, config)
    assert value["output"] == "x" and len(value["steps"]) == 2
    assert graph.get_state(config).values["output"] == "x"
    events = [
        e["event"]
        for e in graph.stream(
            {"tag": "y"}, {"configurable": {"thread_id": "t2"}}, stream_mode="custom"
        )
    ]
    assert events.count("step_added") == 2
    assert [e for e in events if e != "step_added"] == [
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
    ]


def test_control_flow_waits_for_values_and_cancel_stops_queued_steps() -> None:
    cancelled = threading.Event()

    @tool
    def cancel_now() -> str:
        cancelled.set()
        return "stop"

    @workflow(tools=[cancel_now, pause])
    def branchy(flow: Flow) -> Any:
        first = flow.call(cancel_now)
        if first.result() == "stop":
            flow.call(pause, seconds=0, tag="never", id="never")
        return first

    dispatcher = InlineDispatcher(tools=branchy.tools, settings=FAST)
    record = run(branchy, {}, dispatcher=dispatcher, settings=FAST, cancelled=cancelled)
    assert record.status == RunStatus.CANCELLED
    assert {s.id: s.status for s in record.steps}["never"] == StepStatus.CANCELLED
