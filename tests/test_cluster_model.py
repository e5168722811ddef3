"""A Cluster on the real default GGUF model: three runs, one worker start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskloom

pytestmark = pytest.mark.model

PLAN = {
    "version": 1,
    "steps": [
        {
            "id": "intent",
            "kind": "classify",
            "inputs": {"text": "$input.email", "labels": ["refund", "shipping", "other"]},
        }
    ],
    "output": "$intent.label",
}
EMAILS = [
    "My blender arrived broken, I want my money back.",
    "Where is my parcel? It was due on Monday.",
    "Do you have an office dog?",
]


def test_run_many_on_one_cluster_loads_the_model_once(
    taskloom_home: Path, default_model_path: str
) -> None:
    inputs = [{"email": e} for e in EMAILS]
    with taskloom.Cluster(workers=1, model=default_model_path) as cluster:
        records = cluster.run_many(taskloom.load_plan(PLAN), inputs)
        assert cluster.worker_starts == 1
    assert [r.inputs for r in records] == inputs  # in input order
    assert {r.status for r in records} == {taskloom.RunStatus.DONE}, [r.error for r in records]
    assert all(r.output in {"refund", "shipping", "other"} for r in records)
    assert len({s.worker for r in records for s in r.steps}) == 1  # one worker, one model load
