"""docs/api.md: generated from the public API's docstrings, current, and complete."""

from __future__ import annotations

import taskloom
from taskloom.views import apidoc


def test_the_api_page_is_current() -> None:
    assert apidoc.API_PATH.read_text(encoding="utf-8") == apidoc.api_markdown(), (
        "docs/api.md is stale: run python -m taskloom.views.apidoc"
    )
    assert apidoc.main(["--check"]) == 0


def test_every_public_name_and_parameter_is_on_the_page() -> None:
    text = apidoc.API_PATH.read_text(encoding="utf-8")
    sections = {part.split("`", 1)[0].split("(", 1)[0]: part for part in text.split("\n### `")[1:]}
    missing = [name for name in taskloom.__all__ if name not in sections]
    assert not missing, f"public names not on docs/api.md: {missing}"
    for name in taskloom.__all__:
        obj = getattr(taskloom, name)
        absent = [p for p in apidoc.parameters(obj) if p not in sections[name]]
        assert not absent, f"{name}: parameters not on docs/api.md: {absent}"


def test_flows_methods_and_their_options_are_documented() -> None:
    text = apidoc.API_PATH.read_text(encoding="utf-8")
    for method in ("step", "extract", "fill_slots", "filter", "classify", "generate", "call"):
        assert f"#### `Flow.{method}`" in text
    assert "examples=" in text and "max_tokens=" in text  # the options people guess at
    assert "(no docstring)" not in text.split("### `Flow`", 1)[1].split("\n### ", 1)[0]


def test_a_parameter_missing_from_the_page_is_caught() -> None:
    def probe(alpha: int, *, beta: str = "") -> None:
        """A probe."""

    assert apidoc.parameters(probe) == ["alpha", "beta"]
    assert "beta: str = ''" in apidoc._function("probe", probe)
