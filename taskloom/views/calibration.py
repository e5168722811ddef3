"""A calibration as text: per kind, its risk–coverage table and the threshold chosen."""

from __future__ import annotations

from collections.abc import Sequence

from taskloom import calibration
from taskloom.calibration import Calibration
from taskloom.labelled import Graded, confidence_of


def calibration_table(
    fitted: Calibration, graded: Sequence[Graded], *, target: float, level: float
) -> str:
    """Each kind's answers ranked by confidence: precision at each coverage, then the
    threshold (or why there is none)."""
    lines = []
    for kind, cal in sorted(fitted.kinds.items()):
        mine = [g for g in graded if g.kind == kind and g.evidence is not None]
        if not mine:
            continue
        conf = [confidence_of(fitted, kind, g.evidence) for g in mine]
        right = [g.is_right for g in mine]
        lines.append(
            f"{kind}: {len(mine)} answers, {sum(right)} right ({sum(right) / len(mine):.1%});"
            f" AURC {calibration.aurc(conf, right):.3f}"
        )
        lines.append("  coverage  precision  confidence ≥")
        for row in calibration.risk_coverage(conf, right)[1::2]:
            lines.append(
                f"  {row['coverage']:>8.0%}  {row['precision']:>9.1%}  {row['threshold']:.4f}"
            )
        if cal.threshold is None:
            lines.append(
                f"  no threshold reaches {target:.0%} precision with {level:.0%} confidence:"
                f" every {kind} answer is flagged for review"
            )
            highest = cal.highest_target(level)
            if highest is not None:
                there = cal.at(highest, was=target, level=level)
                lines.append(
                    f"  at most {highest:.0%} is reachable: --precision {highest} accepts"
                    f" {there.coverage:.1%} at {there.precision:.1%}"
                )
        else:
            lines.append(
                f"  threshold {cal.threshold}: accepts {cal.coverage:.1%} at {cal.precision:.1%}"
                f" precision (lower bound ≥ {target:.0%} at {level:.0%})"
            )
    return "\n".join(lines)
