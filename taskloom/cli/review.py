"""Commands for steps under review: list them, approve (or edit), reject."""

from __future__ import annotations

import json

import click

from taskloom.cli.app import cli


@cli.command()
@click.option("--redis-url", metavar="URL", help="Redis the runs were submitted to.")
@click.option("--json", "as_json", is_flag=True, help="Print the reviews as a JSON list.")
def reviews(redis_url: str | None, as_json: bool) -> None:
    """List the pending reviews: run, step, kind, value, confidence and why."""
    from taskloom.api import review
    from taskloom.views.reviews import format_reviews

    found = review.reviews(redis_url=redis_url)
    click.echo(json.dumps(found, indent=2) if as_json else format_reviews(found))


@cli.command()
@click.argument("run_id")
@click.argument("step_id")
@click.option("--value", "value_text", metavar="JSON|@FILE", help="Approve this value instead.")
@click.option("--by", metavar="NAME", help="Who approves (default: the user name).")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def approve(
    run_id: str, step_id: str, value_text: str | None, by: str | None, redis_url: str | None
) -> None:
    """Approve STEP_ID's value under review, or an edited one (--value); the run goes on."""
    from taskloom.api import local, review

    edit = {} if value_text is None else {"value": local.read_json(value_text, what="--value")}
    decision = review.approve(run_id, step_id, by=by, redis_url=redis_url, **edit)
    click.echo(f"{run_id} {step_id}: {decision.action} by {decision.by}", err=True)


@cli.command()
@click.argument("run_id")
@click.argument("step_id")
@click.option("--reason", default="", metavar="TEXT", help="Why (kept in the run record).")
@click.option("--by", metavar="NAME", help="Who rejects (default: the user name).")
@click.option("--redis-url", metavar="URL", help="Redis the run was submitted to.")
def reject(run_id: str, step_id: str, reason: str, by: str | None, redis_url: str | None) -> None:
    """Reject STEP_ID's value under review: the step fails, and so does the run."""
    from taskloom.api import review

    decision = review.reject(run_id, step_id, reason=reason, by=by, redis_url=redis_url)
    click.echo(f"{run_id} {step_id}: {decision.action} by {decision.by}", err=True)


@cli.command()
@click.option("--serve", "is_serve", is_flag=True, required=True, help="Serve the review page.")
@click.option("--port", type=int, default=8765, metavar="P", help="The port (default 8765).")
@click.option("--redis-url", metavar="URL", help="Redis the runs were submitted to.")
def review(is_serve: bool, port: int, redis_url: str | None) -> None:
    """Serve the review page on 127.0.0.1 (a token with TASKLOOM_SECRET set)."""
    from taskloom.api.review_page import review_server

    server = review_server(port=port, redis_url=redis_url)
    click.echo(f"reviews at {server.url}", err=True)
    server.serve_forever()
