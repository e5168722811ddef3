"""Routing: simple requests kept on the SLM, complex ones sent to the LLM, on requests
the router never saw.

    python benchmarks/bench_routing.py                  # features, and features + the real model
    python benchmarks/bench_routing.py --features-only  # no model: the features alone

The router's weights were fitted on `data/routing_train.json` (`fit_router.py`); this
reports on `data/routing_eval.json`, written apart from it in another voice and never
used to tune anything (see `benchmarks/README.md`). Each request goes through
`Router.route`, the decision `run --goal` and `taskloom route` make, twice: on the
features alone (no model), and on the features mixed with the SLM's `classify`.

Real: the router's code, and the default GGUF model's `classify` (calibrated token
probabilities) for the SLM signal. Simulated: nothing; no step runs, so no answer is
produced and no answer quality or cost is measured (docs/benchmarks.md makes no cost claim).
Shares come with 95% Wilson intervals. Targets, at the default threshold: ≥ 80% of
simple requests kept on the SLM, ≥ 85% of complex ones sent to the LLM.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import results

from taskloom.agents import Router
from taskloom.chat import ChatModel
from taskloom.cli import configure_logging
from taskloom.config import Settings

DATA = Path(__file__).parent / "data"
SIMPLE_TARGET, COMPLEX_TARGET = 0.80, 0.85


def wilson(hits: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share hits/n."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def judge(router: Router, requests: list[dict[str, str]]) -> dict[str, tuple[int, int]]:
    """(right, total) per label: simple kept on the SLM, complex sent to the LLM."""
    tally = {"simple": [0, 0], "complex": [0, 0]}
    for r in requests:
        route = router.route(r["text"], {"request": r["text"]})
        right = (route.target == "slm") == (r["label"] == "simple")
        tally[r["label"]][0] += right
        tally[r["label"]][1] += 1
    return {label: (hits, n) for label, (hits, n) in tally.items()}


def share(hits: int, n: int) -> str:
    low, high = wilson(hits, n)
    return f"{hits / n:.1%} ({hits}/{n}; 95% CI {low:.0%}–{high:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features-only", action="store_true", help="no model: features alone")
    args = parser.parse_args()
    configure_logging(verbose=0, is_json=False)
    train = json.loads((DATA / "routing_train.json").read_text())["requests"]
    evaluation = json.loads((DATA / "routing_eval.json").read_text())["requests"]
    print(f"training set {len(train)} requests, evaluation set {len(evaluation)}")
    rows: list[results.Row] = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), n_threads=2)
        signals: list[tuple[str, ChatModel | None]] = [("features alone", None)]
        if not args.features_only:
            from taskloom.chat.load import default_host

            signals.append(("features + SLM", default_host(settings)))
        for name, slm in signals:
            router = Router(slm, threshold=settings.route_threshold, settings=settings)
            started = time.perf_counter()
            on_eval = judge(router, evaluation)
            each_ms = (time.perf_counter() - started) / len(evaluation) * 1000
            on_train = judge(router, train)
            (s_hit, s_n), (c_hit, c_n) = on_eval["simple"], on_eval["complex"]
            print(f"\n{name} (threshold {router.threshold:.2f}; {each_ms:.0f} ms a request):")
            print(f"  evaluation: simple → SLM {share(s_hit, s_n)}   (target ≥ 80%)")
            print(f"  evaluation: complex → LLM {share(c_hit, c_n)}   (target ≥ 85%)")
            t_s, t_c = on_train["simple"], on_train["complex"]
            print(
                f"  training (fitted on it): simple → SLM {t_s[0] / t_s[1]:.1%}, "
                f"complex → LLM {t_c[0] / t_c[1]:.1%}"
            )
            rows += [
                results.Row(
                    what=f"router, {name}: simple requests kept on the SLM, evaluation set",
                    measured=share(s_hit, s_n),
                    target="≥ 80%",
                    met=s_hit / s_n >= SIMPLE_TARGET,
                ),
                results.Row(
                    what=f"router, {name}: complex requests sent to the LLM, evaluation set",
                    measured=share(c_hit, c_n),
                    target="≥ 85%",
                    met=c_hit / c_n >= COMPLEX_TARGET,
                ),
            ]
    results.record(
        "bench_routing",
        real="the router's code; the default GGUF model's classify for the SLM signal"
        + (" (not run: --features-only)" if args.features_only else ""),
        simulated="nothing: decisions only, no answers, so no cost or quality claim",
        rows=rows,
    )


if __name__ == "__main__":
    main()
