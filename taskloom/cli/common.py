"""What the commands share: settings from flags, inputs, and printing a run."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from taskloom.config import Settings
from taskloom.errors import InputError

if TYPE_CHECKING:
    from taskloom.api import RunRecord


def parse_inputs(text: str | None) -> dict[str, Any]:
    """--input JSON|@FILE → a JSON object."""
    from taskloom.api.local import read_json

    if text is None:
        return {}
    value = read_json(text, what="--input")
    if not isinstance(value, dict):
        raise InputError(f"--input must be a JSON object, got {type(value).__name__}")
    return value


def settings_from(**flags: Any) -> Settings:
    """Environment settings, overridden by the flags that were given."""
    return Settings.from_env().override(**flags)


def exit_for(record: RunRecord) -> None:
    """Exit 0 for a finished run, 1 for one that failed, was cancelled or is unfinished."""
    raise SystemExit(0 if record.status == "done" else 1)


def emit_record(record: RunRecord, *, as_json: bool) -> None:
    """Print a finished run: the record with --json, else the output and a summary."""
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    elif record.status == "done":
        out = record.output
        click.echo(out if isinstance(out, str) else json.dumps(out, indent=2, ensure_ascii=False))
    t = record.totals
    seconds = (record.finished_at or record.created_at) - record.created_at
    click.echo(
        f"run {record.run_id} {record.status.value}: {t.done}/{t.steps} steps, "
        f"{t.prompt_tokens + t.completion_tokens} tokens, ${t.cost_usd:.6f}, {seconds:.1f}s",
        err=True,
    )
    if record.review:
        shown = ", ".join(  # most doubtful first (RunRecord.review)
            f"{v['step']}.{v['field']}" if v["field"] else str(v["step"]) for v in record.review[:5]
        )
        more = f" and {len(record.review) - 5} more" if len(record.review) > 5 else ""
        # a record written before values said why was flagged by the calibration alone
        whys = Counter(v.get("why") or "not accepted by the calibration" for v in record.review)
        why = next(iter(whys)) if len(whys) == 1 else ", ".join(f"{n} {w}" for w, n in whys.items())
        click.echo(
            f"taskloom: {len(record.review)} values need review ({why}): {shown}{more};"
            " see `review` in --json",
            err=True,
        )
        if "no calibrated threshold yet" in whys:
            click.echo(
                "taskloom: no calibrated threshold accepts those answers at the target"
                " precision; set one from your labelled answers with `taskloom calibrate` or"
                " `taskloom learn`, or ask for less with --precision (docs/calibration.md)",
                err=True,
            )
    if record.status != "done" and record.error:
        click.echo(f"taskloom: error: {record.error.message}", err=True)
        if record.is_resumable:
            click.echo(f"resume with: taskloom resume {record.run_id}", err=True)


def warn_unserved(queues: list[str]) -> None:
    """Warn on stderr about each queue no live worker serves (its jobs would just wait)."""
    for queue in queues:
        click.echo(
            f"taskloom: warning: no live worker serves queue {queue!r}; "
            f"start one with: taskloom worker --queue {queue}",
            err=True,
        )
