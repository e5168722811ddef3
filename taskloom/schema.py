"""The plan wire format as a JSON Schema, generated from the `Plan` model.

The package ships the result as `taskloom/plan.schema.json`, for editors and for
validating plans outside Python. The schema checks the shape of a plan; `load_plan`
(and `taskloom validate`) also checks what a schema can't: references, cycles, the step
limit and each output schema.

Regenerate it after changing the models, and check that it is current:

    python -m taskloom.schema           # rewrite taskloom/plan.schema.json
    python -m taskloom.schema --check   # exit 1 if it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from taskloom.plan import Plan

SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")
"""Where the package keeps the generated schema."""
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of a version-1 plan."""
    schema = Plan.model_json_schema()
    return {"$schema": DIALECT, **schema, "title": "taskloom plan, version 1"}


def schema_text() -> str:
    """The schema as the file holds it: indented JSON with a final newline."""
    return json.dumps(plan_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file, or with `--check` report whether it is stale (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != schema_text():
            print(f"{SCHEMA_PATH} is stale: run python -m taskloom.schema", file=sys.stderr)
            return 1
        return 0
    if args:
        print("usage: python -m taskloom.schema [--check]", file=sys.stderr)
        return 2
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
