"""What each benchmark measured, kept in `benchmarks/results.json`: one entry per benchmark.

Every `bench_*.py` calls `record` once, at its end, with the rows it printed. The
docs/benchmarks.md's "Measured here" table is generated from that file, so no number in it is
copied by hand. A benchmark imports this module as a sibling: it runs as a script.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, TypedDict

RESULTS = Path(__file__).with_name("results.json")


class Row(TypedDict):
    """One measured line: what, the number as printed, the target, and whether it was met."""

    what: str
    measured: str
    target: str
    met: bool | None  # None: reported, no target


def record(bench: str, *, real: str, simulated: str, rows: list[Row]) -> None:
    """Replace `bench`'s entry in results.json with these rows, keeping the others."""
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[bench] = {
        "real": real,
        "simulated": simulated,
        "rows": rows,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    tmp.replace(RESULTS)
