"""`taskloom runs`: one line per run, as a table or as JSON lines."""

from __future__ import annotations

import time
from typing import Any

from taskloom.step import StepStatus
from taskloom.views.status import table
from taskloom.workflows.record import RunRecord, flagged_values

RUN_COLUMNS = ("RUN", "STARTED", "STATUS", "STEPS", "TIME", "COST", "FLAGGED", "TARGET")


def run_summary(record: RunRecord) -> dict[str, Any]:
    """What `taskloom runs` shows of a run (its `--json` line): steps done out of the
    plan's (or of those added so far), seconds from start to end (or to now), dollars
    spent, and how many values are flagged for review (see `review` in the record)."""
    done = sum(s.status == StepStatus.DONE for s in record.steps)
    total = len(record.plan["steps"]) if record.plan else len(record.steps)
    spent = (record.budget or {}).get("spent", {})
    cost = spent.get("cost_usd", sum(s.cost_usd for s in record.steps))
    return {
        "run_id": record.run_id,
        "status": record.status.value,
        "target": record.target,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "duration_s": round((record.finished_at or time.time()) - record.created_at, 3),
        "steps_done": done,
        "steps_total": total,
        "cost_usd": cost,
        "flagged": sum(len(flagged_values(s)) for s in record.steps),
    }


def format_runs(records: list[RunRecord]) -> str:
    """A row per run, newest first as given."""
    if not records:
        return "no runs"
    rows = []
    for record in records:
        s = run_summary(record)
        rows.append(
            [
                s["run_id"],
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["created_at"])),
                s["status"],
                f"{s['steps_done']}/{s['steps_total']}",
                f"{s['duration_s']:.1f}s",
                f"${s['cost_usd']:.6f}",
                str(s["flagged"]) if s["flagged"] else "-",
                s["target"] or "-",
            ]
        )
    return table(list(RUN_COLUMNS), rows)
