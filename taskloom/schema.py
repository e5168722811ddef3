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
    return write_or_check(
        SCHEMA_PATH, schema_text(), command="python -m taskloom.schema", argv=argv
    )


def write_or_check(path: Path, text: str, *, command: str, argv: list[str] | None) -> int:
    """A generated file's command line: write `text` to `path`, or with `--check` exit 1
    when the file differs from it (it is stale), naming `command` to regenerate it."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    if args:
        print(f"usage: {command} [--check]", file=sys.stderr)
        return 2
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
