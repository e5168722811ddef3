"""An evaluation as text: accuracy per step and per field, a confusion table per classify."""

from __future__ import annotations

from typing import Any


def evaluation_table(summary: dict[str, Any]) -> str:
    """The summary of `Evaluation.summary()` as aligned text."""
    lines = [
        f"{summary['examples']} examples, {summary['answers']} answers graded,"
        f" {summary['right']} right ({_pct(summary['accuracy'])})"
    ]
    if summary["not_graded"]:
        lines.append(f"{summary['not_graded']} examples not graded: generate has no right answer")
    for step in summary["steps"]:
        name = step["step"] if step["step"] == step["kind"] else f"{step['step']} ({step['kind']})"
        lines.append("")
        lines.append(f"{name}: {step['right']}/{step['answers']} right ({_pct(step['accuracy'])})")
        width = max(len("field"), *(len(f["field"]) for f in step["fields"]))
        lines.append(f"  {'field':<{width}}  answers  right  accuracy")
        for f in step["fields"]:
            lines.append(
                f"  {f['field']:<{width}}  {f['answers']:>7}  {f['right']:>5}"
                f"  {_pct(f['accuracy']):>8}"
            )
        if "confusion" in step:
            lines += ["", *_confusion_lines(step["confusion"])]
    return "\n".join(lines)


def _confusion_lines(table: dict[str, dict[str, int]]) -> list[str]:
    """Rows: the expected label; columns: the label predicted."""
    predicted = sorted({got for row in table.values() for got in row})
    labels = [*table, *(p for p in predicted if p not in table)]
    columns = [p for p in labels if p in predicted]
    corner = "expected \\ predicted"
    width = max(len(corner), *(len(label) for label in labels))
    cells = [max(len(c), 3) for c in columns]
    head = f"  {corner:<{width}}"
    head += "".join(f"  {c:>{w}}" for c, w in zip(columns, cells, strict=True))
    rows = [head]
    for want, row in table.items():
        counts = "".join(f"  {row.get(c, 0):>{w}}" for c, w in zip(columns, cells, strict=True))
        rows.append(f"  {want:<{width}}{counts}")
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
