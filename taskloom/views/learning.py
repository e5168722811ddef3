"""What `taskloom learn` learned, as a table: one signature a line, before and after."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from taskloom.calibration import LEVEL, TARGET_PRECISION, lower_bound
from taskloom.lessons import Learned, Lesson

WEIGHTS_FROM = {"own": ", its own weights", "calibration": ", the calibration's adapted weights"}


def lessons_table(found: Sequence[Learned], *, where: Path) -> str:
    """Each signature's held-back accuracy and coverage before → after, and its threshold."""
    lines = [
        f"{'kind':<11}{'signature':<18}{'examples':>9}{'held back':>10}"
        f"  {'accuracy':<15}{'coverage@95%':<15}{'threshold':>9}  learned"
    ]
    for f in found:
        head = f"{f.kind:<11}{f.signature:<18}{f.examples:>9}"
        lesson = f.lesson
        if lesson is None:
            lines.append(f"{head}{'':>10}  not learned: {f.skipped}")
            lines += audit_line(f)
            continue
        b, a = lesson.before, lesson.after
        accuracy = f"{b['accuracy']:.0%} → {a['accuracy']:.0%}"
        coverage = f"{b['coverage']:.0%} → {a['coverage']:.0%}"
        threshold = (
            f"{lesson.threshold:.3f}"
            if lesson.threshold is not None
            else "inherited"
            if lesson.inherits
            else "none"
        )
        live = f"; threshold also on {lesson.live} live answers" if lesson.live else ""
        lines.append(
            f"{head}{lesson.held_back:>10}  {accuracy:<15}{coverage:<15}{threshold:>9}"
            f"  {runs_with(lesson)}{live}"
        )
        lines += audit_line(f)
    lines.append(f"lessons in {where}; later runs of these steps use them")
    return "\n".join(lines)


def audit_line(f: Learned, *, target: float = TARGET_PRECISION, level: float = LEVEL) -> list[str]:
    """What the audit measured of the answers accepted before this `learn`, if anything:
    their precision and its bounds, and whether it is surely below the target."""
    if f.audited is None:
        return []
    right, n = f.audited
    low, high = lower_bound(right, n, level=level), 1 - lower_bound(n - right, n, level=level)
    below = f"; below the {target:.0%} target (≤ {high:.0%})" if high < target else ""
    return [
        f"{'':<11}audited: {right} of {n} accepted answers right ({right / n:.0%};"
        f" at {level:.0%}, ≥ {low:.0%}){below}"
    ]


def runs_with(lesson: Lesson) -> str:
    """What a lesson's steps run with: its adapter, its examples, or neither."""
    if lesson.adapter:
        trusted = ", its nulls trusted" if lesson.trust_nulls else ""
        weighed = WEIGHTS_FROM[lesson.weights_from] if lesson.weights else ""
        return f"adapter {lesson.adapter}{trusted}{weighed}"
    return f"{lesson.shots} {lesson.choose}" if lesson.examples else "none (as written)"
