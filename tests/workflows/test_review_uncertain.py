"""`review: uncertain` asks a person only about a value the calibration did not accept;
an approval is banked as a person's label. Real Redis holds the desk; the SLM steps run
inline on the scripted model (what is flagged does not depend on the model here: a
`generate` text that invents a number is never accepted)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from taskloom.bank import ExampleBank, step_signature
from taskloom.chat import ScriptedChatModel
from taskloom.config import Settings
from taskloom.dispatch.broker import Broker
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.plan import Step, load_plan
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord
from taskloom.workflows.review import ReviewDesk, ReviewingDispatcher
from taskloom.workflows.runner import run
from tests.workers.redis_helpers import wait_for

PLAN = {
    "version": 1,
    "steps": [
        {"id": "invents", "kind": "generate", "inputs": {"instruction": "Thank Ana."}},
        {"id": "grounded", "kind": "generate", "inputs": {"instruction": "Greet Bo."}},
    ],
    "output": {"a": "$invents.text", "b": "$grounded.text"},
}


def reply(messages: Any, schema: dict[str, Any] | None) -> dict[str, str]:
    said = " ".join(str(m.get("content", "")) for m in messages)
    return {"text": "Order 98765 is refunded." if "Ana" in said else "Hello Bo."}


def test_uncertain_asks_only_about_the_value_not_accepted_and_banks_the_approval(
    tmp_path: Path, redis_url: str, taskloom_home: Path
) -> None:
    settings = Settings(examples=tmp_path / "bank")
    desk = ReviewDesk(Broker(redis_url, settings=settings), settings=settings)
    inline = InlineDispatcher(model=ScriptedChatModel(respond=reply), settings=settings)
    dispatcher = ReviewingDispatcher(inline, desk, default="uncertain")
    workflow = Workflow.from_plan(load_plan(PLAN))
    done: list[RunRecord] = []

    def drive() -> None:
        done.append(run(workflow, {}, dispatcher=dispatcher, settings=settings, run_id="r-unc"))

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        [pending] = wait_for(desk.pending, what="a review to be asked")
        assert (pending["step"], pending["why"]) == ("invents", "not accepted: invents 98765")
        fixed = {"text": "Thank you, Ana."}
        desk.approve("r-unc", "invents", value=fixed, by="ana")
    finally:
        thread.join(timeout=60)
    [record] = done
    assert record.status.value == "done"
    assert record.output == {"a": "Thank you, Ana.", "b": "Hello Bo."}
    assert [(r["step"], r["action"]) for r in record.reviews] == [("invents", "edit")]
    step = Step(id="invents", kind="generate", inputs=pending["inputs"])
    [banked] = ExampleBank(settings.examples_path).examples(step_signature(step))
    assert banked.expected == fixed


def test_a_python_step_under_review_fails_inline_saying_review_needs_redis(
    taskloom_home: Path,
) -> None:
    from taskloom.api.local import run as run_target
    from taskloom.workflows.definition import workflow
    from taskloom.workflows.flow import Flow

    @workflow
    def greet(flow: Flow) -> Any:
        return {"a": flow.generate("Greet Bo.", review="always"), "b": flow.generate("Hi Al.")}

    record = run_target(greet, {}, is_inline=True, model="scripted")
    steps = {s.id: s for s in record.steps}
    assert record.status.value == "failed"
    assert steps["generate"].error is not None
    assert steps["generate"].error.message.startswith("review needs Redis")
    assert steps["generate_2"].status.value == "done"
