"""Flagged values: listed under `review` in the record, and counted in the CLI's summary."""

from __future__ import annotations

from click.testing import CliRunner

from taskloom.step import StepStatus
from taskloom.workflows.record import RunRecord, RunStatus


def flagged_record() -> RunRecord:
    record = RunRecord(run_id="r1", status=RunStatus.DONE, output="ok")
    contact = record.step("contact", "extract")
    contact.status = StepStatus.DONE
    contact.accepted = False
    contact.meta = {
        "fields": {
            "name": {"value": "Maria", "confidence": 0.97, "accepted": True},
            "order_id": {"value": None, "confidence": 0.41, "accepted": False},
        },
        "threshold": 0.8,
    }
    intent = record.step("intent", "classify")
    intent.status, intent.accepted, intent.confidence = StepStatus.DONE, False, 0.5
    intent.value = {"label": "refund", "confidence": 0.5}
    intent.meta = {"threshold": None}  # the calibration has none for this kind
    fine = record.step("fine", "classify")
    fine.status, fine.accepted = StepStatus.DONE, True
    record.tally()
    return record


def test_only_values_not_accepted_are_listed_for_review() -> None:
    record = flagged_record()
    assert record.review == [
        {
            "step": "contact",
            "field": "order_id",
            "value": None,
            "confidence": 0.41,
            "why": "below the calibrated threshold",
        },
        {
            "step": "intent",
            "field": None,
            "value": {"label": "refund", "confidence": 0.5},
            "confidence": 0.5,
            "why": "no calibrated threshold yet",
        },
    ]
    assert record.totals.flagged == 2


def test_the_summary_line_says_how_many_values_need_review() -> None:
    import click

    from taskloom.cli.common import emit_record

    @click.command()
    def show() -> None:
        emit_record(flagged_record(), as_json=False)

    result = CliRunner().invoke(show)
    assert (
        "2 values need review (1 below the calibrated threshold, 1 no calibrated threshold"
        " yet): contact.order_id, intent;"
    ) in result.stderr
    assert "set one from your labelled answers with `taskloom calibrate`" in result.stderr


def test_the_summary_line_says_why_and_lists_the_most_doubtful_first() -> None:
    import click

    from taskloom.cli.common import emit_record

    record = flagged_record()
    reply = record.step("reply", "generate")
    reply.status, reply.accepted, reply.value = StepStatus.DONE, False, {"text": "in a week"}
    reply.meta = {"invented": [], "changed": ['"a week" → not in the source'], "accepted": False}
    record.tally()
    assert [(v["step"], v["why"]) for v in record.review] == [  # most doubtful first
        ("reply", "a quantity its sources do not support"),
        ("contact", "below the calibrated threshold"),
        ("intent", "no calibrated threshold yet"),
    ]

    @click.command()
    def show() -> None:
        emit_record(record, as_json=False)

    record.steps[1].meta = {"threshold": 0.9}
    record.steps[1].confidence = 0.2  # less sure than contact.order_id: listed before it
    record.tally()
    lines = CliRunner().invoke(show).stderr
    assert (
        "3 values need review (1 a quantity its sources do not support, 2 below the"
        " calibrated threshold): reply, intent, contact.order_id;"
    ) in lines
    assert "taskloom calibrate" not in lines  # every flagged kind has a threshold
