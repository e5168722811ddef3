"""Reviews from the library: list the pending ones, approve (or edit), reject.

The CLI's `taskloom reviews`, `approve` and `reject`, and the review page, call these.
Every call takes `settings=` and any `Settings` field as a keyword option (`redis_url`).
"""

from __future__ import annotations

from typing import Any

from taskloom.api.remote import connect_redis
from taskloom.config import Settings, settings_for
from taskloom.workflows.review import UNSET, Decision, ReviewDesk

__all__ = ["approve", "reject", "reviews"]


def _desk(settings: Settings | None, options: dict[str, Any]) -> ReviewDesk:
    settings = settings_for(settings, options)
    return ReviewDesk(connect_redis(settings), settings=settings)


def reviews(*, settings: Settings | None = None, **options: Any) -> list[dict[str, Any]]:
    """The pending reviews, oldest first: run, step, kind, inputs, value, confidence,
    the flagged fields, and why each is asked."""
    return _desk(settings, options).pending()


def approve(
    run_id: str,
    step_id: str,
    *,
    value: Any = UNSET,
    by: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Decision:
    """Approve a step's value under review, or approve an edited `value`; the run goes on.

    Raises:
        InputError: no such pending review, or a value that does not fit the step's schema.
    """
    return _desk(settings, options).approve(run_id, step_id, value=value, by=by)


def reject(
    run_id: str,
    step_id: str,
    *,
    reason: str = "",
    by: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Decision:
    """Reject a step's value under review: the step fails (ReviewRejectedError), and the
    run fails with every finished result kept.

    Raises:
        InputError: no such pending review.
    """
    return _desk(settings, options).reject(run_id, step_id, reason=reason, by=by)
