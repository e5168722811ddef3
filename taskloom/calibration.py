"""Calibration: confidences that are probabilities of being right, and where to accept.

A calibration file (JSON; the package ships one fitted on the dev halves and fitting
sets of benchmarks/data, `taskloom calibrate` writes others) holds, per SLM kind:
- `weights`: a logistic model over a field's signals (`tools/confidence.py`), for
  `extract` and `fill_slots`; or `scale`: Platt scaling of the kind's own confidence
  (`classify`, `filter`): p = sigmoid(a · logit(c) + b);
- `adapted_weights` (optional): the same model fitted on an adapted model's answers
  (`taskloom learn --adapter`), which the base model's weights rank badly; used for an
  adapter's lessons until they hold enough answers to fit their own;
- `threshold`: the lowest confidence accepted. It is the lowest at which the accepted
  answers of the fitting data reach the target precision with a finite-sample bound:
  the Clopper–Pearson lower bound at `level` (0.90) is at least `target_precision`.
  None when no threshold reaches it: every answer of that kind is flagged.
- `frontier`: the fitting data's thresholds worth choosing among, each with the answers
  it accepts and how many of them were right, so that a run can ask for another target
  precision (`Calibration.at`, `TASKLOOM_TARGET_PRECISION`) without labelling again.

Thresholds can also be kept per step signature (kind + output schema + the inputs that
define the task, not its data); a signature's threshold wins over its kind's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from taskloom.errors import ConfigError
from taskloom.step import StepResult

DEFAULT_PATH = Path(__file__).parent / "calibration.json"
_NUMBERS = re.compile(r"\[([-\d\s.,eE+]*)\]")
TARGET_PRECISION = 0.95
LEVEL = 0.90
DATA_INPUTS = frozenset({"text", "passages", "query", "context", "examples", "max_tokens"})
"""Inputs that carry a step's data, not its task: left out of its signature."""


class KindCalibration(BaseModel):
    """How one kind's (or one signature's) confidence is mapped, and where it is accepted."""

    weights: list[float] | None = Field(None, description="logistic weights over the signals")
    adapted_weights: list[float] | None = Field(
        None,
        description="weights for an adapted model's answers, where its lesson has too few "
        "to fit its own (`labelled.adapter_confidence`)",
    )
    scale: tuple[float, float] | None = Field(None, description="Platt scaling (a, b)")
    threshold: float | None = Field(None, description="the lowest confidence accepted")
    examples: int = Field(0, description="labelled answers it was fitted on")
    coverage: float | None = Field(None, description="share accepted on the fitting data")
    precision: float | None = Field(None, description="precision of those accepted")
    frontier: list[tuple[float, int, int]] | None = Field(
        None,
        description="(threshold, answers accepted, right among them) on the fitting data, "
        "where no lower threshold has a higher bound on its precision (`frontier`)",
    )

    def at(self, target: float, *, was: float, level: float) -> KindCalibration:
        """This calibration's threshold for another target precision, chosen on its
        frontier. Without one, the threshold it has stands for a lower target (its
        answers reach that too) and is dropped for a higher one."""
        if target == was:
            return self
        if self.frontier is not None:
            found = judged(self.frontier, self.examples, target=target, level=level)
            return self.model_copy(update=found)
        if target < was:
            return self
        return self.model_copy(update={"threshold": None, "coverage": 0.0, "precision": 0.0})

    def highest_target(self, level: float) -> float | None:
        """The highest target precision (to the percent below) its frontier has a
        threshold for; None without a frontier, or where no answer was right."""
        bounds = [lower_bound(k, n, level=level) for _, n, k in self.frontier or []]
        best = _floor(max(bounds), 2) if bounds else 0.0
        return best if best > 0 else None


class Calibration(BaseModel):
    """A calibration file (module doc)."""

    version: int = 1
    target_precision: float = TARGET_PRECISION
    level: float = LEVEL
    about: str = ""
    kinds: dict[str, KindCalibration] = Field(default_factory=dict)
    signatures: dict[str, KindCalibration] = Field(default_factory=dict)

    def at(self, target: float | None) -> Calibration:
        """This calibration judging at another target precision (None: its own): each
        kind's and signature's threshold chosen again (`KindCalibration.at`)."""
        if target is None or target == self.target_precision:
            return self

        def moved(found: dict[str, KindCalibration]) -> dict[str, KindCalibration]:
            return {
                name: kc.at(target, was=self.target_precision, level=self.level)
                for name, kc in found.items()
            }

        return self.model_copy(
            update={
                "target_precision": target,
                "kinds": moved(self.kinds),
                "signatures": moved(self.signatures),
            }
        )

    def to_json(self) -> str:
        """The file's text: indented, each list of numbers on one line."""
        text = self.model_dump_json(indent=1, exclude_none=True)
        return _NUMBERS.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"

    def of(self, kind: str) -> KindCalibration:
        """The kind's calibration (an uncalibrated one if the file has none)."""
        return self.kinds.get(kind) or KindCalibration()

    def threshold(self, kind: str, sig: str | None = None) -> float | None:
        """The lowest confidence accepted for a step of this kind and signature."""
        if sig is not None and sig in self.signatures:
            return self.signatures[sig].threshold
        return self.of(kind).threshold

    def field_confidence(self, kind: str, vector: Sequence[float]) -> float | None:
        """A field's probability of being right from its signals (None: not fitted).

        Weights fitted before the last signals existed are fewer than the vector: those
        signals are not weighed (`confidence.FEATURES` is only appended to)."""
        weights = self.of(kind).weights
        if weights is None or len(weights) > len(vector):
            return None
        return sigmoid(sum(w * x for w, x in zip(weights, vector, strict=False)))

    def step_confidence(self, kind: str, raw: float | None) -> float | None:
        """A kind's own confidence mapped to a probability of being right."""
        scale = self.of(kind).scale
        if raw is None or scale is None:
            return raw
        a, b = scale
        return sigmoid(a * logit(raw) + b)

    def is_accepted(self, kind: str, confidence: float | None, sig: str | None = None) -> bool:
        """Whether an answer with this confidence is accepted (flagged otherwise)."""
        return accepts(confidence, self.threshold(kind, sig))


def accepts(confidence: Any, threshold: float | None) -> bool:
    """Whether an answer with this confidence is accepted at `threshold` (None: none is)."""
    is_number = isinstance(confidence, int | float)
    return threshold is not None and is_number and confidence >= threshold


def judge_meta(
    meta: dict[str, Any], confidence: float | None, threshold: float | None
) -> tuple[dict[str, Any], bool | None]:
    """An answer's meta judged at `threshold`, and whether the step is accepted: each
    field of `meta.fields` accepted or flagged, and the step accepted when all of them
    are; a step without fields, by its confidence. `meta.threshold` is the threshold it
    was judged by. None: the answer states no confidence (`generate`: its review judges)."""
    fields = meta.get("fields")
    if isinstance(fields, dict) and fields:
        judged = {
            name: {**f, "accepted": accepts(f.get("confidence"), threshold)}
            for name, f in fields.items()
        }
        accepted = all(f["accepted"] for f in judged.values())
        return {**meta, "fields": judged, "threshold": threshold}, accepted
    if confidence is None:
        return meta, None
    return {**meta, "threshold": threshold}, accepts(confidence, threshold)


def judge_at(result: StepResult, threshold: float | None) -> StepResult:
    """The result with its answers accepted or flagged by `threshold` (`judge_meta`).
    A result that states no confidence is returned as it is."""
    if result.accepted is None:  # failed, or a kind without a confidence
        return result
    meta, accepted = judge_meta(result.meta, result.confidence, threshold)
    if accepted is None:
        return result  # judged by its review (generate)
    return result.model_copy(update={"accepted": accepted, "meta": meta})


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float, target: float | None) -> Calibration:
    try:
        return Calibration.model_validate_json(Path(path).read_text()).at(target)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"calibration file {path!r} can't be read ({e}); write one with "
            "`taskloom calibrate --examples FILE.jsonl` or unset TASKLOOM_CALIBRATION"
        ) from e


def load(path: str | Path | None = None, *, target: float | None = None) -> Calibration:
    """The calibration at `path`, or the one the package ships (cached until it changes),
    judging at `target` precision (None: the file's own; `Calibration.at`).

    Raises:
        ConfigError: the file is missing or not a calibration file.
    """
    p = Path(path) if path else DEFAULT_PATH
    try:
        mtime = p.stat().st_mtime
    except OSError as e:
        raise ConfigError(
            f"calibration file {str(p)!r} does not exist; write one with "
            "`taskloom calibrate --examples FILE.jsonl` or unset TASKLOOM_CALIBRATION"
        ) from e
    return _load(str(p), mtime, target)


def signature(kind: str, inputs: dict[str, Any], output: dict[str, Any] | None) -> str:
    """The step's signature: a hash of its kind, output schema and task-defining inputs."""
    task = {k: v for k, v in inputs.items() if k not in DATA_INPUTS}
    body = json.dumps({"kind": kind, "output": output, "inputs": task}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(min(x, 50.0), -50.0)))


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


# --- fitting ----------------------------------------------------------------------------


def fit_logistic(
    rows: Sequence[Sequence[float]], right: Sequence[bool], *, l2: float = 1.0
) -> list[float]:
    """Logistic-regression weights by Newton's method, an L2 penalty on all but the bias."""
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(right, dtype=np.float64)
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        grad = x.T @ (p - y) + penalty @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + penalty + np.eye(len(w)) * 1e-9
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return [round(float(v), 5) for v in w]


def fit_scale(confidences: Sequence[float], right: Sequence[bool]) -> tuple[float, float]:
    """Platt scaling (a, b) of a kind's own confidence."""
    bias, slope = fit_logistic([[1.0, logit(c)] for c in confidences], right, l2=0.01)
    return (slope, bias)


FOLDS = 5
PER_PARAMETER = 8
"""Labelled answers per fitted parameter (and at least 40, with 10 right and 10 wrong)
before a kind's weights or scale are fitted anew; with fewer, only its threshold is."""


def fit_kind(
    kind: str,
    inputs: Sequence[Sequence[float] | float],
    right: Sequence[bool],
    groups: Sequence[str],
    *,
    base: KindCalibration | None = None,
    target: float = TARGET_PRECISION,
    level: float = LEVEL,
    l2: float = 1.0,
) -> tuple[KindCalibration, list[float]]:
    """A kind's calibration from labelled answers: its mapping, then its threshold.

    `inputs` are each answer's signal vector (extract, fill_slots) or its kind's own
    confidence (classify, filter). With enough answers (`can_refit`) the mapping is
    fitted anew and the threshold is chosen on out-of-fold confidences (5 folds by
    `groups`, e.g. the example each answer came from), so the threshold is never picked
    on answers the mapping was fitted to; otherwise `base`'s mapping is kept.

    Returns:
        The calibration, and the confidences the threshold was chosen on.
    """
    is_vector = bool(inputs) and not isinstance(inputs[0], int | float)
    current = base or KindCalibration()

    def mapping(idx: Sequence[int]) -> KindCalibration:
        if is_vector:
            rows = [list(inputs[i]) for i in idx]  # type: ignore[arg-type]
            return KindCalibration(weights=fit_logistic(rows, [right[i] for i in idx], l2=l2))
        values = [float(inputs[i]) for i in idx]  # type: ignore[arg-type]
        return KindCalibration(scale=fit_scale(values, [right[i] for i in idx]))

    def confidence(cal: KindCalibration, x: Sequence[float] | float) -> float:
        probe = Calibration(kinds={kind: cal})
        if isinstance(x, int | float):
            return probe.step_confidence(kind, float(x)) or 0.0
        return probe.field_confidence(kind, x) or 0.0

    n_params = len(inputs[0]) if is_vector else 2  # type: ignore[arg-type]
    if can_refit(right, n_params):
        names = sorted(set(groups))
        fold_of = {g: i % FOLDS for i, g in enumerate(names)}
        oof = [0.0] * len(right)
        for k in range(FOLDS):
            fitted = mapping([i for i in range(len(right)) if fold_of[groups[i]] != k])
            for i in range(len(right)):
                if fold_of[groups[i]] == k:
                    oof[i] = confidence(fitted, inputs[i])
        current, scored = mapping(range(len(right))), oof
    else:
        scored = [confidence(current, x) for x in inputs]
    found = judged(frontier(scored, right, level=level), len(right), target=target, level=level)
    # adapted weights were fitted on an adapted model's answers, not these: kept as they were
    found["adapted_weights"] = base.adapted_weights if base else None
    return current.model_copy(update=found), scored


def can_refit(right: Sequence[bool], n_params: int) -> bool:
    """Whether these labelled answers are enough to fit a mapping of `n_params` anew
    (PER_PARAMETER)."""
    n_right = sum(right)
    enough = max(40, PER_PARAMETER * n_params)
    return len(right) >= enough and min(n_right, len(right) - n_right) >= 10


def rounded_down(threshold: float | None) -> float | None:
    """A threshold to 4 decimals, rounded down so that the answer at it stays accepted."""
    return None if threshold is None else _floor(threshold, 4)


def _floor(x: float, places: int) -> float:
    scale = 10.0**places
    # 1e-9: 0.1234 stays 0.1234; min: never above x, so the answer at x stays accepted
    return min(math.floor(x * scale + 1e-9) / scale, x)


def lower_bound(k: int, n: int, *, level: float = LEVEL) -> float:
    """Clopper–Pearson: the one-sided lower confidence bound of a rate, k right of n."""
    if n == 0 or k == 0:
        return 0.0
    alpha = 1 - level
    lo, hi = 0.0, k / n
    for _ in range(60):  # P(X ≥ k | n, p) rises with p: bisect for where it equals alpha
        mid = (lo + hi) / 2
        if _tail(k, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def _tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def choose_threshold(
    confidences: Sequence[float],
    right: Sequence[bool],
    *,
    target: float = TARGET_PRECISION,
    level: float = LEVEL,
) -> tuple[float | None, float, float]:
    """The lowest threshold whose accepted answers reach `target` precision with the
    Clopper–Pearson bound; returns (threshold or None, coverage, precision there)."""
    chosen = _lowest(frontier(confidences, right, level=level), target=target, level=level)
    if chosen is None:
        return None, 0.0, 0.0
    c, n, k = chosen
    return c, n / len(right), k / n


def frontier(
    confidences: Sequence[float], right: Sequence[bool], *, level: float = LEVEL
) -> list[tuple[float, int, int]]:
    """The thresholds worth choosing among: (threshold, answers accepted, right among
    them), most confident first, at each confidence where the accepted answers change,
    kept only where the lower bound on their precision beats every lower threshold's.
    For any target, the lowest threshold reaching it is one of them."""
    pairs = sorted(zip(confidences, right, strict=True), key=lambda p: -p[0])
    ends = []
    k = 0
    for n, (c, ok) in enumerate(pairs, start=1):
        k += ok
        if n == len(pairs) or pairs[n][0] < c:
            ends.append((_floor(c, 6), n, k))
    kept: list[tuple[float, int, int]] = []
    best = 0.0
    for c, n, k in reversed(ends):  # the lowest threshold first
        bound = lower_bound(k, n, level=level)
        if bound > best:
            kept.append((c, n, k))
            best = bound
    return kept[::-1]


def _lowest(
    points: Sequence[tuple[float, int, int]], *, target: float, level: float
) -> tuple[float, int, int] | None:
    """The frontier's lowest threshold whose precision's lower bound reaches `target`."""
    for point in reversed(points):
        if lower_bound(point[2], point[1], level=level) >= target:
            return point
    return None


def judged(
    points: Sequence[tuple[float, int, int]], total: int, *, target: float, level: float
) -> dict[str, Any]:
    """What a KindCalibration keeps of a `frontier` of `total` answers: the frontier,
    and its threshold at `target` with the coverage and precision there."""
    chosen = _lowest(points, target=target, level=level)
    c, n, k = chosen if chosen is not None else (None, 0, 0)
    return {
        "threshold": rounded_down(c),
        "coverage": round(n / max(total, 1), 4),
        "precision": round(k / max(n, 1), 4),
        "examples": total,
        "frontier": list(points),
    }


def risk_coverage(confidences: Sequence[float], right: Sequence[bool]) -> list[dict[str, float]]:
    """Precision of the most confident answers kept, at each coverage in 5% steps."""
    pairs = sorted(zip(confidences, right, strict=True), key=lambda p: -p[0])
    rows = []
    for pct in range(5, 101, 5):
        n = max(1, round(len(pairs) * pct / 100))
        kept = pairs[:n]
        rows.append(
            {
                "coverage": n / len(pairs),
                "precision": sum(ok for _, ok in kept) / n,
                "threshold": kept[-1][0],
            }
        )
    return rows


def aurc(confidences: Sequence[float], right: Sequence[bool]) -> float:
    """Area under the risk–coverage curve: the mean error rate over every coverage."""
    pairs = sorted(zip(confidences, right, strict=True), key=lambda p: -p[0])
    wrong = total = 0.0
    for n, (_, ok) in enumerate(pairs, start=1):
        wrong += not ok
        total += wrong / n
    return total / max(len(pairs), 1)


def coverage_at(
    confidences: Sequence[float], right: Sequence[bool], *, target: float = TARGET_PRECISION
) -> float:
    """The largest share of answers that can be kept, most confident first, at `target`
    precision (the plain rate, no bound: what a benchmark reports)."""
    pairs = sorted(zip(confidences, right, strict=True), key=lambda p: -p[0])
    best = k = 0
    for n, (c, ok) in enumerate(pairs, start=1):
        k += ok
        is_last_of_tie = n == len(pairs) or pairs[n][0] < c
        if is_last_of_tie and k / n >= target:
            best = n
    return best / max(len(pairs), 1)


def calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error over equal-width bins."""
    total = 0.0
    pairs = list(zip(confidences, right, strict=True))
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in pairs if low < c <= high or (b == 0 and c == 0)]
        if inside:
            acc = sum(ok for _, ok in inside) / len(inside)
            conf = sum(c for c, _ in inside) / len(inside)
            total += abs(acc - conf) * len(inside) / len(pairs)
    return total
