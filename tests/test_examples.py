"""The examples run: with the scripted model here, on the real model under the marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskloom import InlineDispatcher, RunStatus, ScriptedChatModel, Settings, ToolRegistry, run
from taskloom.chat import sample_for_schema
from taskloom.workflows.target import load_target, read_json

EXAMPLES = Path(__file__).parent.parent / "examples"


def respond(messages: Any, schema: dict[str, Any] | None) -> Any:
    fields = set((schema or {}).get("properties", {}))
    if "label" in fields:
        return {"label": "refund"}
    if "name" in fields:
        return {"name": "Maria Lopez", "order_id": "A-1042"}
    if "text" in fields:
        return {"text": "Dear Maria, your refund is on its way."}
    return sample_for_schema(schema or {})


def test_triage_workflow_example_runs(taskloom_home: Path) -> None:
    inputs = read_json(f"@{EXAMPLES / 'triage_input.json'}", what="input")
    target = f"{EXAMPLES / 'triage.py'}:triage"
    wf = load_target(target, max_steps=64, inputs=inputs, tools=ToolRegistry())
    model = ScriptedChatModel(respond=respond)
    settings = Settings()
    record = run(
        wf, inputs, dispatcher=InlineDispatcher(model=model, tools=wf.tools), settings=settings
    )
    assert record.status == RunStatus.DONE, record.error
    assert record.output["who"] == "Maria Lopez" and record.output["intent"] == "refund"
    order = next(s for s in record.steps if s.id == "order")
    assert order.value == {"item": "teapot", "status": "delivered"}
    # the refund branch was taken: its instruction names the order
    reply_prompt = json.dumps(model.calls[-1][0])
    assert "the refund for order A-1042" in reply_prompt
