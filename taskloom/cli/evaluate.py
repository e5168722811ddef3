"""`taskloom eval`: accuracy on labelled examples (the same file and runner as calibrate)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskloom.cli.app import cli
from taskloom.cli.common import settings_from


@cli.command("eval")
@click.argument("target", required=False, metavar="[PLAN.json]")
@click.option(
    "--examples",
    "examples_path",
    required=True,
    metavar="FILE.jsonl",
    help='Labelled examples, one {"step": ..., "expected": ...} a line (docs/evaluation.md).',
)
@click.option("--model", metavar="PATH", help="GGUF model for the steps (TASKLOOM_MODEL).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Steps decoded together.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(target: str | None, examples_path: str, as_json: bool, **options: Any) -> None:
    """Accuracy per step and field on labelled examples (PLAN.json: lines name its steps)."""
    from taskloom.api import evaluate as api
    from taskloom.views.evaluation import evaluation_table

    examples = api.read_examples(examples_path, target=target)
    with click.progressbar(length=len(examples), label="running", file=sys.stderr) as bar:
        report = api.evaluate(examples, settings=settings_from(**options), progress=bar.update)
    for line in report.failed:
        click.echo(f"taskloom: warning: not graded: {line}", err=True)
    summary = report.summary()
    click.echo(json.dumps(summary, indent=2) if as_json else evaluation_table(summary))
