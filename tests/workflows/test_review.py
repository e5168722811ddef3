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
        }
    }
    intent = record.step("intent", "classify")
    intent.status, intent.accepted, intent.confidence = StepStatus.DONE, False, 0.5
    intent.value = {"label": "refund", "confidence": 0.5}
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
            "why": "not accepted by the calibration",
        },
        {
            "step": "intent",
            "field": None,
            "value": {"label": "refund", "confidence": 0.5},
            "confidence": 0.5,
            "why": "not accepted by the calibration",
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
    assert "2 values need review (not accepted by the calibration)" in result.stderr
    assert "contact.order_id, intent" in result.stderr


def test_the_summary_line_says_why_each_kind_of_value_was_flagged() -> None:
    import click

    from taskloom.cli.common import emit_record

    record = flagged_record()
    reply = record.step("reply", "generate")
    reply.status, reply.accepted, reply.value = StepStatus.DONE, False, {"text": "in a week"}
    reply.meta = {"invented": [], "changed": ['"a week" → not in the source'], "accepted": False}
    record.tally()
    assert record.review[-1]["why"] == "a quantity its sources do not support"

    @click.command()
    def show() -> None:
        emit_record(record, as_json=False)

    line = CliRunner().invoke(show).stderr
    assert (
        "3 values need review (2 not accepted by the calibration, 1 a quantity its sources"
        " do not support): contact.order_id, intent, reply;"
    ) in line
