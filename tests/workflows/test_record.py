"""Run records: totals, and records from other versions shown with what they have."""

from __future__ import annotations

import json

from taskloom.step import StepStatus
from taskloom.workflows.record import RunStatus, parse_record


def test_a_record_from_another_version_keeps_what_it_can() -> None:
    old = {
        "run_id": "20250101-000000-abcdef",
        "status": "paused",  # a status this version doesn't know
        "plan_version": 0,  # a field this version doesn't have
        "steps": [
            {"id": "a", "kind": "extract", "status": "done", "run_ms": "fast", "value": {"x": 1}},
            {"kind": "classify", "status": "done"},  # no id: can't be shown
            {"id": "b", "kind": "generate", "status": "queued", "cost_usd": 0.5},
        ],
        "totals": "n/a",
    }
    record = parse_record(json.dumps(old))
    assert record.run_id == "20250101-000000-abcdef"
    assert record.status == RunStatus.PENDING
    assert [s.id for s in record.steps] == ["a", "b"]
    a, b = record.steps
    assert a.status == StepStatus.DONE and a.run_ms == 0.0 and a.value == {"x": 1}
    assert b.status == StepStatus.PENDING and b.cost_usd == 0.5


def test_garbage_is_an_empty_record_not_a_crash() -> None:
    assert parse_record("[1, 2]").run_id == "?"
    assert parse_record({"run_id": 5, "steps": "nope"}).steps == []
