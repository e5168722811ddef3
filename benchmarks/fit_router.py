"""Fit the router's weights on the training set only: `data/routing_train.json`.

    python benchmarks/fit_router.py          # the features' weights (no model)
    python benchmarks/fit_router.py --slm    # then the mix with the real model's classify

Logistic regression by gradient descent with a small L2 penalty, weights rounded to
two decimals; it prints the constants to paste into `taskloom/agents/router.py`
(`FEATURE_WEIGHTS`, `FEATURE_BIAS`, `SLM_MIX`) and the training-set agreement at the
threshold 0.5. It never reads the evaluation set (`data/routing_eval.json`), which
`bench_routing.py` reports on.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from taskloom.agents.router import Router, _logit, feature_logit, features
from taskloom.config import Settings

TRAIN = Path(__file__).parent / "data" / "routing_train.json"


def fit(rows: list[list[float]], labels: list[int], *, l2: float = 0.1) -> list[float]:
    """Weights (last one the bias) of a logistic regression, by full-batch gradient descent.

    Each column is scaled to unit standard deviation while fitting, so the penalty
    weighs the features alike (a count of words spans more than a count of clauses);
    the weights returned apply to the raw values.
    """
    scale = [_std([x[i] for x in rows]) or 1.0 for i in range(len(rows[0]))]
    rows = [[xi / si for xi, si in zip(x, scale, strict=True)] for x in rows]
    w = [0.0] * (len(rows[0]) + 1)
    for _ in range(20000):
        grad = [0.0] * len(w)
        for x, y in zip(rows, labels, strict=True):
            z = w[-1] + sum(wi * xi for wi, xi in zip(w, x, strict=False))
            err = 1.0 / (1.0 + math.exp(-z)) - y
            for i, xi in enumerate(x):
                grad[i] += err * xi
            grad[-1] += err
        for i in range(len(w)):
            penalty = l2 * w[i] if i < len(w) - 1 else 0.0
            w[i] -= 0.1 * (grad[i] / len(rows) + penalty)
    return [round(v / si, 2) for v, si in zip(w, scale, strict=False)] + [round(w[-1], 2)]


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def agreement(z: list[float], labels: list[int]) -> tuple[float, float]:
    """(simple kept on the SLM, complex sent to the LLM) at the threshold 0.5 (z = 0)."""
    simple = [v < 0 for v, y in zip(z, labels, strict=True) if y == 0]
    complex_ = [v >= 0 for v, y in zip(z, labels, strict=True) if y == 1]
    return sum(simple) / len(simple), sum(complex_) / len(complex_)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slm", action="store_true", help="also fit the mix with the real model")
    args = parser.parse_args()
    requests = json.loads(TRAIN.read_text())["requests"]
    labels = [int(r["label"] == "complex") for r in requests]
    names = list(features("", {}))
    rows = [list(features(r["text"], {"request": r["text"]}).values()) for r in requests]
    w = fit(rows, labels)
    print("FEATURE_WEIGHTS =", dict(zip(names, w[:-1], strict=True)))
    print("FEATURE_BIAS =", w[-1])
    z_f = [w[-1] + sum(a * b for a, b in zip(w, x, strict=False)) for x in rows]
    s, c = agreement(z_f, labels)
    print(f"training set, features (as fitted): simple→SLM {s:.1%}, complex→LLM {c:.1%}")
    if not args.slm:
        return
    from taskloom.chat.load import default_host

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), n_threads=2)
        router = Router(default_host(settings), settings=settings)
        p = [router.slm_signal(r["text"])[0] for r in requests]
    # the features' logit as router.py has it now (paste the weights above first)
    z_now = [feature_logit(r["text"], {"request": r["text"]}) for r in requests]
    mix = fit([[zf, _logit(pi)] for zf, pi in zip(z_now, p, strict=True)], labels)
    print("SLM_MIX =", tuple(mix))
    s, c = agreement([_logit(pi) for pi in p], labels)
    print(f"training set, the SLM's classify alone: simple→SLM {s:.1%}, complex→LLM {c:.1%}")
    z_mix = [mix[0] * zf + mix[1] * _logit(pi) + mix[2] for zf, pi in zip(z_now, p, strict=True)]
    s, c = agreement(z_mix, labels)
    print(f"training set, features + SLM: simple→SLM {s:.1%}, complex→LLM {c:.1%}")


if __name__ == "__main__":
    main()
