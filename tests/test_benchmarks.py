"""docs/benchmarks.md's "Measured here" table is what `benchmarks/results.json` says, and every
benchmark records its rows there (fast: no benchmark runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent
BENCHMARKS = ROOT / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_measured_table_is_generated_from_results_json() -> None:
    table = load("table")
    results = json.loads((BENCHMARKS / "results.json").read_text())
    readme = (ROOT / "docs" / "benchmarks.md").read_text()
    assert table.splice(readme, table.render(results)) == readme, (
        "docs/benchmarks.md's measured table disagrees with benchmarks/results.json; "
        "run python benchmarks/table.py"
    )


def test_the_check_fails_on_a_changed_number() -> None:
    table = load("table")
    results = json.loads((BENCHMARKS / "results.json").read_text())
    readme = (ROOT / "docs" / "benchmarks.md").read_text()
    bench = next(iter(results))
    results[bench]["rows"][0]["measured"] += " (edited)"
    assert table.splice(readme, table.render(results)) != readme


def test_missed_targets_are_listed_with_the_number_reached() -> None:
    table = load("table")
    results = {
        "bench_x": {
            "real": "a",
            "simulated": "b",
            "measured_at": "2026-12-02T00:00:00Z",
            "machine": "x86_64, 2 cores",
            "rows": [{"what": "speed", "measured": "1.2×", "target": "≥ 1.5×", "met": False}],
        }
    }
    out = table.render(results, ["bench_x", "bench_y"])
    assert "| speed | 1.2× | ≥ 1.5× | **missed** | real: a; simulated: b | `bench_x` |" in out
    assert "- `bench_x`: speed: 1.2×, against ≥ 1.5× (measured 2026-12-02)." in out
    assert "Not measured (no entry in results.json): `bench_y`." in out


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("bench_*.py")), ids=lambda p: p.stem)
def test_every_benchmark_records_its_rows(path: Path) -> None:
    text = path.read_text()
    assert "results.record(" in text or "bench_results.record(" in text
