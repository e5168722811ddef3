"""Absence decided by the runtime (taskloom.tools.absence), on the scripted fake.

The fake's `scores` function plays the model's likelihoods: each check scores the
answer up to a field followed by ` null`, and by the model's candidate.
"""

from __future__ import annotations

import re
from typing import Any

from taskloom.agents.budget import Budget
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.chat import ScriptedChatModel
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.step import StepJob, StepStatus
from taskloom.tools import run_task
from taskloom.tools.absence import is_nullable, nullable_fields, p_absent

CONTACT = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"]},
        "city": {"type": ["string", "null"]},
        "kind": {"type": "string"},
    },
    "required": ["name", "city", "kind"],
}
TEXT = "Ann Lee wrote from Paris about an order"


def scorer(null_wins: set[str], *, by: float = 10.0) -> Any:
    """Likelihoods where ` null` beats the candidate by `by` nats for `null_wins` fields,
    and loses by as much for the others."""

    def score(continuation: str) -> float:
        fields = re.findall(r'"(\w+)":', continuation)
        if not fields:  # not an absence check (the second view's question): no opinion
            return -1.0
        is_null = continuation.endswith(": null")
        return -1.0 if is_null == (fields[-1] in null_wins) else -1.0 - by

    return score


def escalating(slm: Any, llm: Any, settings: Settings) -> EscalatingDispatcher:
    """SLM steps run inline on `slm`; what they can't do reliably goes to `llm`."""
    inline = InlineDispatcher(model=slm, settings=settings)
    return EscalatingDispatcher(
        inline, llm=llm, budget=Budget.from_settings(settings), settings=settings
    )


def contact_job(**inputs: Any) -> StepJob:
    """The contact extraction of TEXT as a job, as a dispatcher receives it."""
    return StepJob(
        run_id="r1",
        step_id="contact",
        kind="extract",
        inputs={"text": TEXT, **inputs},
        output=CONTACT,
    )


def extract(model: ScriptedChatModel, **inputs: Any) -> Any:
    return run_task("extract", {"text": TEXT, "copy": True, **inputs}, output=CONTACT, model=model)


def test_nullable_fields_are_those_whose_schema_admits_null() -> None:
    assert nullable_fields(CONTACT) == ["name", "city"]
    assert is_nullable({"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert not is_nullable({"type": "string"})


def test_a_span_the_model_likes_less_than_null_becomes_null_with_its_decision() -> None:
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    model = ScriptedChatModel([answer], scores=scorer({"city"}))
    out = extract(model)
    assert out.value == {"name": "Ann Lee", "city": None, "kind": "order"}
    city, name = out.meta["absence"]["city"], out.meta["absence"]["name"]
    assert city["decision"] == "absent" and city["candidate"] == "Paris"
    assert name["decision"] == "present" and name["candidate"] == "Ann Lee"
    assert city["confidence"] > 0.9 and name["confidence"] > 0.9
    assert "kind" not in out.meta["absence"], "a field that can't be null is not weighed"
    fields = out.meta["fields"]
    assert out.confidence == min(f["confidence"] for f in fields.values())
    assert fields["city"]["value"] is None and fields["name"]["value"] == "Ann Lee"


def test_the_checks_score_each_field_after_the_answer_up_to_it() -> None:
    seen: list[str] = []

    def score(continuation: str) -> float:
        seen.append(continuation)
        return -1.0

    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    extract(ScriptedChatModel([answer], scores=score))
    assert [c for c in seen if c.startswith(" {")] == [
        ' {"name": null',
        ' {"name": "Ann Lee"',
        ' {"name": "Ann Lee", "city": null',
        ' {"name": "Ann Lee", "city": "Paris"',
    ]


def test_a_null_the_model_wrote_stays_null_and_says_how_sure_it_is() -> None:
    answer = {"name": None, "city": None, "kind": "order"}
    out = extract(ScriptedChatModel([answer], scores=scorer(set())))
    assert out.value["name"] is None and out.value["city"] is None
    name = out.meta["absence"]["name"]
    assert name["decision"] == "absent" and name["candidate"] is None
    assert name["confidence"] < 0.5, "the model preferred a value: an unsure null"


def test_equal_scores_are_no_evidence_and_the_answer_stands() -> None:
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    out = extract(ScriptedChatModel([answer]))  # the fake scores every continuation alike
    assert out.value == answer
    assert {d["confidence"] for d in out.meta["absence"].values()} == {0.5}
    assert p_absent(-2.0, -2.0, "x") == 0.5


def test_a_plan_can_turn_the_check_off() -> None:
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    scored: list[str] = []
    model = ScriptedChatModel([answer], scores=lambda c: scored.append(c) or -1.0)
    out = extract(model, absence=False)
    assert out.value == answer and "absence" not in out.meta
    assert not [c for c in scored if c.startswith(" {")], "no field was weighed against null"


def test_fill_slots_reports_a_slot_decided_absent_as_missing() -> None:
    model = ScriptedChatModel([{"date": "Madrid", "room": "hall"}], scores=scorer({"date"}))
    out = run_task(
        "fill_slots",
        {"text": "to Madrid, hall", "slots": {"date": "the date", "room": "the room"}},
        model=model,
    )
    assert out.value == {"slots": {"date": None, "room": "hall"}, "missing": ["date"]}
    assert out.meta["absence"]["date"]["decision"] == "absent"


def test_the_step_result_carries_the_decisions_and_a_low_confidence_escalates(
    tmp_path: Any,
) -> None:
    settings = Settings(home=tmp_path / "home", escalate_below=0.9, escalate_flagged=False)
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    slm = ScriptedChatModel([answer], scores=scorer({"city"}, by=5.5), name="slm")
    llm = ScriptedChatModel([{"name": "Ann Lee", "city": None, "kind": "order"}], name="llm")
    dispatcher = escalating(slm, llm, settings)
    job = contact_job(copy=True)
    slm_result = InlineDispatcher(
        model=ScriptedChatModel([answer], scores=scorer({"city"}, by=5.5)), settings=settings
    ).dispatch(job)
    assert slm_result.status == StepStatus.DONE
    assert slm_result.confidence is not None and slm_result.confidence < 0.9
    assert slm_result.meta["absence"]["city"]["decision"] == "absent"
    result = dispatcher.dispatch(job)
    (esc,) = dispatcher.escalations
    assert esc["reason"].startswith("confidence") and esc["status"] == "done"
    assert result.model == "llm" and result.value["city"] is None
    assert llm.calls, "the step ran again on the LLM"


def test_generate_trims_a_text_its_budget_cut_to_the_last_sentence_end() -> None:
    from taskloom.tools.generate import trim

    assert trim("Dear Ann, thanks. We will call you on Fri", is_cut=True) == "Dear Ann, thanks."
    assert trim("Dear Ann, we will call you on Fri", is_cut=True) == "Dear Ann, we will call you on"
    assert trim("Hello Ann, done {x}", is_cut=False) == "Hello Ann, done {x}"
    cut = run_task(
        "generate",
        {"instruction": "reply", "max_tokens": 14},
        model=ScriptedChatModel([{"text": "Hi Ann. All is well. We ship"}]),
    )
    assert cut.value == {"text": "Hi Ann. All is well."}


def test_a_grounded_reply_loses_the_stub_of_an_id_whose_digits_were_turned_down() -> None:
    said = {"text": "Dear Ann, about refund B- A-1042 (B-). Your T-shirt ships soon."}
    inputs = {"instruction": "reply to Ann", "context": {"order_id": "A-1042"}}
    out = run_task("generate", inputs, model=ScriptedChatModel([said]))
    assert out.value == {"text": "Dear Ann, about refund A-1042. Your T-shirt ships soon."}
    free = run_task("generate", {**inputs, "grounded": False}, model=ScriptedChatModel([said]))
    assert free.value == said


def test_generate_closes_an_answer_its_token_budget_cut_inside_the_text() -> None:
    # One-character tokens spend the budget before `maxLength` closes the string.
    model = ScriptedChatModel(['{"text": "Dear Ann, thanks. We sent order B-A-A-D-D-A-\\u00'])
    out = run_task("generate", {"instruction": "reply", "max_tokens": 64}, model=model)
    assert out.value == {"text": "Dear Ann, thanks."}
    assert out.usage.calls == 1, "closed where it was cut, not re-asked warm"


def test_flagged_fields_take_the_llms_values_and_accepted_ones_keep_the_slms(
    tmp_path: Any,
) -> None:
    from taskloom.calibration import Calibration, KindCalibration
    from taskloom.tools.confidence import FEATURES

    # a calibration whose extract threshold accepts `name` (confident) but not `city`
    weights = [0.0] * len(FEATURES)
    weights[0], weights[1] = 4.0, -8.0  # present: sigmoid(4) ≈ 0.98; null: sigmoid(-4)
    cal = Calibration(kinds={"extract": KindCalibration(weights=weights, threshold=0.9)})
    path = tmp_path / "calibration.json"
    path.write_text(cal.model_dump_json())
    settings = Settings(home=tmp_path / "home", calibration=str(path), escalate_below=0.0)
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    slm = ScriptedChatModel([answer], scores=scorer({"city"}), name="slm")
    llm = ScriptedChatModel([{"name": "Ann L.", "city": "Lyon", "kind": "visit"}], name="llm")
    dispatcher = escalating(slm, llm, settings)
    job = contact_job()
    result = dispatcher.dispatch(job)
    (esc,) = dispatcher.escalations
    assert "fields city not accepted by the calibration" in esc["reason"]
    assert result.value == {"name": "Ann Lee", "city": "Lyon", "kind": "order"}
    assert result.meta["fields"]["city"]["by"] == "llm"
    assert result.meta["fields"]["name"]["by"] == "slm"
    assert result.accepted is True


def test_when_the_llm_cannot_answer_the_flagged_slm_answer_stands(tmp_path: Any) -> None:
    from taskloom.errors import EndpointUnavailableError

    class Down(ScriptedChatModel):
        def complete(self, *args: Any, **kwargs: Any) -> Any:
            raise EndpointUnavailableError("LLM endpoint down; check that it is up")

    settings = Settings(home=tmp_path / "home", escalate_below=0.0)
    answer = {"name": "Ann Lee", "city": "Paris", "kind": "order"}
    slm = ScriptedChatModel([answer], scores=scorer({"city"}), name="slm")
    dispatcher = escalating(slm, Down(name="llm"), settings)
    job = contact_job()
    result = dispatcher.dispatch(job)
    assert result.status == StepStatus.DONE and result.model == "slm"
    assert result.accepted is False  # still flagged: it goes to review
    (esc,) = dispatcher.escalations
    assert esc["status"] == "failed"
