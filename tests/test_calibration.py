"""Calibration: the finite-sample bound, thresholds, the metrics, the file, signatures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from taskloom import calibration
from taskloom.calibration import Calibration, KindCalibration
from taskloom.errors import ConfigError
from taskloom.labelled import ADAPTER_SIGNALS
from taskloom.step import StepResult, StepStatus


def test_clopper_pearson_lower_bound_matches_the_closed_form() -> None:
    # k = n: the bound solves p^n = 1 - level
    assert calibration.lower_bound(45, 45, level=0.9) == pytest.approx(0.1 ** (1 / 45), abs=1e-6)
    assert calibration.lower_bound(0, 10) == 0.0
    # more evidence, same rate: a tighter (higher) bound
    assert calibration.lower_bound(95, 100) < calibration.lower_bound(950, 1000) < 0.95


def test_the_threshold_is_the_lowest_whose_accepted_answers_pass_the_bound() -> None:
    rng = random.Random(1)
    conf = [0.99 - i / 10_000 for i in range(300)] + [0.6 - i / 10_000 for i in range(300)]
    right = [rng.random() < (0.995 if c > 0.9 else 0.6) for c in conf]
    threshold, coverage, precision = calibration.choose_threshold(conf, right)
    assert threshold is not None
    kept = [ok for c, ok in zip(conf, right, strict=True) if c >= threshold]
    assert len(kept) / len(conf) == pytest.approx(coverage) and precision == sum(kept) / len(kept)
    assert calibration.lower_bound(sum(kept), len(kept)) >= 0.95
    assert coverage > 0.4  # nearly all of the confident half
    more = [ok for c, ok in zip(conf, right, strict=True) if c >= threshold - 0.4]
    assert calibration.lower_bound(sum(more), len(more)) < 0.95


def test_no_threshold_when_nothing_reaches_the_target() -> None:
    assert calibration.choose_threshold([0.9, 0.8, 0.7], [True, False, True]) == (None, 0.0, 0.0)


def test_coverage_aurc_and_calibration_error() -> None:
    conf = [0.9, 0.8, 0.7, 0.6]
    right = [True, True, False, False]
    assert calibration.coverage_at(conf, right) == 0.5
    assert calibration.aurc(conf, right) == pytest.approx((0 + 0 + 1 / 3 + 2 / 4) / 4)
    assert calibration.calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert calibration.calibration_error([0.9, 0.9], [False, False]) == pytest.approx(0.9)


def test_logistic_fit_separates_a_separable_signal() -> None:
    rows = [[1.0, x / 10] for x in range(-20, 21)]
    right = [r[1] > 0 for r in rows]
    bias, slope = calibration.fit_logistic(rows, right, l2=0.1)
    assert slope > 1 and abs(bias) < 1


def test_fit_kind_refits_with_enough_answers_and_thresholds_out_of_fold() -> None:
    rng = random.Random(2)
    xs = [rng.uniform(-4, 4) for _ in range(300)]
    right = [rng.random() < calibration.sigmoid(2 * x) for x in xs]
    fitted, scored = calibration.fit_kind(
        "extract", [[1.0, x] for x in xs], right, [str(i) for i in range(300)]
    )
    assert fitted.weights is not None and fitted.weights[1] > 1
    assert fitted.threshold is not None and fitted.coverage and fitted.coverage > 0.2
    assert len(scored) == 300


def test_refitting_keeps_the_adapted_weights_it_was_not_fitted_on() -> None:
    """A kind's weights refitted on the base model's answers leave the weights fitted on
    an adapted model's answers (`adapted_weights`) as they were."""
    rng = random.Random(3)
    xs = [rng.uniform(-4, 4) for _ in range(200)]
    right = [rng.random() < calibration.sigmoid(2 * x) for x in xs]
    base = KindCalibration(weights=[0.0, 0.0], adapted_weights=[1.0, -1.0])
    fitted, _ = calibration.fit_kind(
        "extract", [[1.0, x] for x in xs], right, [str(i) for i in range(200)], base=base
    )
    assert fitted.weights != base.weights and fitted.adapted_weights == [1.0, -1.0]


def test_the_file_round_trips_and_a_missing_one_says_what_to_do(tmp_path: Path) -> None:
    cal = Calibration(kinds={"classify": KindCalibration(scale=(2.0, 0.0), threshold=0.9)})
    path = tmp_path / "c.json"
    path.write_text(cal.model_dump_json())
    loaded = calibration.load(path)
    assert loaded.step_confidence("classify", 0.5) == pytest.approx(0.5)
    assert loaded.step_confidence("classify", 0.8) > 0.8  # slope 2 sharpens
    assert loaded.is_accepted("classify", 0.95) and not loaded.is_accepted("classify", 0.85)
    assert not loaded.is_accepted("extract", 0.99)  # no threshold: flagged
    with pytest.raises(ConfigError, match="taskloom calibrate"):
        calibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="can't be read"):
        calibration.load(tmp_path / "bad.json")


def test_a_signature_threshold_wins_over_its_kind() -> None:
    cal = Calibration(
        kinds={"classify": KindCalibration(threshold=0.9)},
        signatures={"abc": KindCalibration(threshold=0.5)},
    )
    assert cal.is_accepted("classify", 0.6, "abc") and not cal.is_accepted("classify", 0.6)


def test_a_signature_names_the_task_not_its_data() -> None:
    a = calibration.signature("classify", {"text": "one", "labels": ["x", "y"]}, None)
    b = calibration.signature("classify", {"text": "two", "labels": ["x", "y"]}, None)
    c = calibration.signature("classify", {"text": "one", "labels": ["x", "z"]}, None)
    assert a == b != c


def test_the_shipped_calibration_loads_and_covers_the_field_kinds() -> None:
    shipped = json.loads(calibration.DEFAULT_PATH.read_text())
    cal = calibration.load()
    assert set(shipped["kinds"]) == set(cal.kinds)
    for kind in ("extract", "fill_slots"):
        assert cal.kinds[kind].weights is not None
        # benchmarks/fit_adapted.py's, one a signal an adapter's own weights weigh
        assert len(cal.kinds[kind].adapted_weights or []) == len(ADAPTER_SIGNALS)


def test_weights_fitted_before_the_last_signals_leave_those_unweighed() -> None:
    older = Calibration(kinds={"extract": KindCalibration(weights=[0.5, -1.0])})
    assert older.field_confidence("extract", [1.0, 1.0, 7.0, 7.0]) == pytest.approx(
        calibration.sigmoid(-0.5)
    )
    assert older.field_confidence("extract", [1.0]) is None  # more weights than signals


def _lowest_by_brute_force(conf: list[float], right: list[bool], target: float) -> float | None:
    """The lowest confidence whose accepted answers reach `target` with the bound, trying
    every one (what the frontier must agree with)."""
    passing = [
        c
        for c in set(conf)
        if calibration.lower_bound(
            sum(ok for x, ok in zip(conf, right, strict=True) if x >= c),
            sum(x >= c for x in conf),
        )
        >= target
    ]
    return min(passing) if passing else None


def test_the_frontier_chooses_the_threshold_of_any_target_without_the_answers() -> None:
    rng = random.Random(4)
    conf = [rng.random() for _ in range(400)]
    right = [rng.random() < 0.55 + 0.45 * c for c in conf]
    kept = KindCalibration(
        **calibration.judged(calibration.frontier(conf, right), len(conf), target=0.95, level=0.9)
    )
    assert kept.frontier and len(kept.frontier) < 100  # a few points, not every answer
    for target in (0.8, 0.9, 0.95, 0.97):
        moved = kept.at(target, was=0.95, level=0.9)
        assert moved.threshold == calibration.rounded_down(
            _lowest_by_brute_force(conf, right, target)
        ), target
        if moved.threshold is not None:
            accepted = [ok for c, ok in zip(conf, right, strict=True) if c >= moved.threshold]
            assert moved.coverage == round(len(accepted) / len(conf), 4)
    lower, higher = (kept.at(t, was=0.95, level=0.9).coverage or 0 for t in (0.8, 0.95))
    assert lower > higher  # a lower target accepts more


def test_without_a_frontier_a_threshold_stands_for_lower_targets_only() -> None:
    old = KindCalibration(threshold=0.9, coverage=0.2, precision=0.97)
    assert old.at(0.8, was=0.95, level=0.9).threshold == 0.9
    assert old.at(0.99, was=0.95, level=0.9).threshold is None


def test_a_calibration_loaded_at_another_target_moves_kinds_and_signatures(
    tmp_path: Path,
) -> None:
    conf = [1 - i / 200 for i in range(200)]
    right = [i < 120 or i % 3 == 0 for i in range(200)]  # all right at the top
    fitted = KindCalibration(
        **calibration.judged(calibration.frontier(conf, right), len(conf), target=0.95, level=0.9)
    )
    path = tmp_path / "c.json"
    cal = Calibration(kinds={"classify": fitted}, signatures={"abc": fitted})
    path.write_text(cal.model_dump_json())
    at_95 = calibration.load(path)
    at_80 = calibration.load(path, target=0.8)
    assert at_95.threshold("classify") == fitted.threshold
    assert at_80.target_precision == 0.8
    for sig in (None, "abc"):
        low, high = at_80.threshold("classify", sig), at_95.threshold("classify", sig)
        assert low is not None and high is not None and low < high
    assert calibration.load(path, target=0.8) is at_80  # chosen once, not at each step


def test_judging_at_a_threshold_flags_each_field_and_leaves_reviewed_kinds() -> None:
    fields = {
        "a": {"value": "x", "confidence": 0.9, "accepted": False},
        "b": {"value": "y", "confidence": 0.7, "accepted": False},
    }
    result = StepResult(
        run_id="r", step_id="s", status=StepStatus.DONE, value={"a": "x", "b": "y"},
        confidence=0.7, accepted=False, meta={"fields": fields, "threshold": None},
    )  # fmt: skip
    judged = calibration.judge_at(result, 0.8)
    assert judged.accepted is False and judged.meta["threshold"] == 0.8
    assert [f["accepted"] for f in judged.meta["fields"].values()] == [True, False]
    assert calibration.judge_at(result, 0.6).accepted is True
    assert calibration.judge_at(result, None).accepted is False
    reply = StepResult(
        run_id="r", step_id="s", status=StepStatus.DONE, value="hi", accepted=False,
        meta={"accepted": False},
    )  # fmt: skip
    assert calibration.judge_at(reply, 0.0) == reply  # generate: its review judged it


def test_a_worker_judges_at_the_target_precision_it_was_given(tmp_path: Path) -> None:
    """TASKLOOM_TARGET_PRECISION on a worker: its SLM steps are judged by the threshold
    the calibration's frontier gives for that precision."""
    from taskloom.chat import ScriptedChatModel
    from taskloom.config import Settings
    from taskloom.step import StepJob
    from taskloom.tools import ToolRegistry
    from taskloom.tools.confidence import FEATURES
    from taskloom.tools.execute import execute

    conf = [1 - i / 200 for i in range(200)]
    right = [i < 120 or i % 3 == 0 for i in range(200)]
    found = calibration.judged(calibration.frontier(conf, right), 200, target=0.95, level=0.9)
    kind = KindCalibration(weights=[1.0] + [0.0] * (len(FEATURES) - 1), **found)
    path = tmp_path / "c.json"
    path.write_text(Calibration(kinds={"extract": kind}).to_json())
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    job = StepJob(run_id="r", step_id="s", kind="extract", inputs={"text": "a b"}, output=schema)
    for target in (None, 0.8):
        settings = Settings(home=tmp_path, calibration=str(path), target_precision=target)
        result = execute(
            job, model=lambda: ScriptedChatModel(), tools=ToolRegistry(), settings=settings,
            worker="w",
        )  # fmt: skip
        assert result.status == StepStatus.DONE
        assert result.meta["threshold"] == calibration.load(path, target=target).threshold(
            "extract"
        )
    assert calibration.load(path, target=0.8).threshold("extract") != kind.threshold
