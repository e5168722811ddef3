"""`taskloom calibrate` as a library call: labelled steps in, a calibration file out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taskloom import calibration, labelled
from taskloom.calibration import Calibration
from taskloom.chat import load_model
from taskloom.config import Settings
from taskloom.errors import InputError


@dataclass(frozen=True)
class CalibrationReport:
    """What `calibrate` fitted, from which graded answers, and where it wrote it."""

    calibration: Calibration
    graded: list[labelled.Graded]
    failed: list[str]
    path: Path


def read_examples(path: str | Path) -> list[labelled.Labelled]:
    """The labelled examples of a JSONL file (`labelled.read`).

    Raises:
        InputError: naming the first bad line and what is wrong with it.
    """
    return labelled.read(path)


def run_examples(
    examples: list[labelled.Labelled],
    *,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[labelled.Graded], list[str]]:
    """Run every labelled step on the local model and grade it: the runner that
    `calibrate` and `evaluate` share.

    Returns:
        The graded answers, and one line per example whose step failed to run.

    Raises:
        InputError: nothing could be graded.
        ModelFileError, MissingExtraError: the model can't be loaded.
    """
    graded, failed = labelled.run(
        examples,
        model=load_model(settings),
        calibration=calibration.load(settings.calibration),
        concurrency=settings.concurrency,
        progress=progress,
    )
    if not graded:
        raise InputError(f"no example could be graded: {failed[0] if failed else 'none ran'}")
    return graded, failed


def calibrate(
    examples: list[labelled.Labelled],
    *,
    settings: Settings,
    out: str | Path | None = None,
    target: float = calibration.TARGET_PRECISION,
    level: float = calibration.LEVEL,
    progress: Callable[[int], None] | None = None,
) -> CalibrationReport:
    """Run every labelled step on the local model, grade it, and write the thresholds
    that reach `target` precision (docs/calibration.md).

    Args:
        out: the file to write (default: `settings.home / "calibration.json"`).
        progress: told each time an example has run.

    Raises:
        InputError: nothing could be graded.
        ModelFileError, MissingExtraError: the model can't be loaded.
    """
    base = calibration.load(settings.calibration)
    graded, failed = run_examples(examples, settings=settings, progress=progress)
    fitted = labelled.recalibrate(base, graded, target=target, level=level)
    path = Path(out) if out else settings.home / "calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fitted.to_json())
    return CalibrationReport(calibration=fitted, graded=graded, failed=failed, path=path)
