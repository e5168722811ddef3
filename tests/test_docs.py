"""The documentation stays true: links resolve inside the repository, docs/cli.md names
every command, flag and setting, and the shipped plan schema matches the models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import jsonschema
import pytest

from taskloom import schema
from taskloom.cli import cli
from taskloom.config import Settings, env_var
from taskloom.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "examples" / "README.md",
    *sorted(DOCS.glob("*.md")),
]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
BARE_URL = re.compile(r"<(https?://[^>]+)>")


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return LINK.findall(text) + BARE_URL.findall(text)


def _anchors(page: Path) -> set[str]:
    """GitHub-style heading slugs of a page."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"#+ (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_and_resolves(page: Path) -> None:
    assert page.exists(), f"{page} is missing"
    wrong = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            wrong.append(f"{target}: leaves the repository")
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if "::" in target:
            wrong.append(f"{target}: a ::test anchor no code host can follow")
        elif ROOT not in (resolved, *resolved.parents):
            wrong.append(f"{target}: outside the repository")
        elif not resolved.exists():
            wrong.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            wrong.append(f"{target}: no heading #{anchor}")
    assert not wrong, f"{page.relative_to(ROOT)}:\n" + "\n".join(wrong)


def test_the_guarantees_name_tests_that_exist() -> None:
    page = DOCS / "guarantees.md"
    cited = re.findall(r"\]\((\.\./tests/[^)]+\.py)\) \(`(test_\w+)`\)", page.read_text())
    assert len(cited) >= 20, "the guarantees should cite their tests by name"
    missing = [
        f"{path}: {name}"
        for path, name in cited
        if not re.search(rf"def {name}\(", (page.parent / path).read_text(encoding="utf-8"))
    ]
    assert not missing, "guarantees cite tests that don't exist:\n" + "\n".join(missing)


def _commands() -> list[tuple[str, click.Command]]:
    group = cli
    assert isinstance(group, click.Group)
    return sorted(group.commands.items())


def _sections(text: str) -> dict[str, str]:
    """The text under each `### \\`taskloom NAME\\`` heading."""
    parts = re.split(r"^### `taskloom (\w+)`\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _flags(command: click.Command) -> list[str]:
    return [
        opt
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for opt in [*param.opts, *param.secondary_opts]
    ]


def test_cli_md_documents_every_command_and_flag() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = _sections(text)
    global_section = text.split("## Global options", 1)[1].split("\n## ", 1)[0]
    missing = [f"global {f}" for f in [*_flags(cli), "--help"] if f"`{f}`" not in global_section]
    for name, command in _commands():
        if command.hidden:
            continue
        if name not in sections:
            missing.append(f"command {name}")
            continue
        missing += [f"{name} {f}" for f in _flags(command) if f"`{f}" not in sections[name]]
    assert not missing, "docs/cli.md lacks:\n" + "\n".join(missing)
    extra = sorted(set(sections) - {name for name, _ in _commands()})
    assert not extra, f"docs/cli.md documents commands that don't exist: {extra}"


def test_cli_md_documents_every_setting_and_exit_code() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [env_var(name) for name in Settings.model_fields if f"`{env_var(name)}`" not in text]
    assert not missing, f"docs/cli.md lacks the variables: {missing}"
    codes = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in (0, 1, 2, 3, 70, 75, 130):
        assert f"| {code} |" in codes, f"exit code {code} is not documented"


def test_the_shipped_plan_schema_is_current() -> None:
    assert schema.SCHEMA_PATH.read_text(encoding="utf-8") == schema.schema_text(), (
        "taskloom/plan.schema.json is stale: run python -m taskloom.schema"
    )
    assert schema.main(["--check"]) == 0


def test_a_stale_schema_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "plan.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(schema, "SCHEMA_PATH", stale)
    assert schema.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert schema.main([]) == 0 and schema.main(["--check"]) == 0


def _example_plans() -> list[Path]:
    plans = []
    for path in sorted((ROOT / "examples").rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "steps" in data:
            plans.append(path)
    return plans


@pytest.mark.parametrize("path", _example_plans(), ids=lambda p: p.name)
def test_example_plans_validate_against_the_schema(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema.plan_schema()).validate(data)
    load_plan(data, source=str(path))


def test_the_schema_refuses_what_the_format_refuses() -> None:
    validator = jsonschema.Draft202012Validator(schema.plan_schema())
    good = {"version": 1, "steps": [{"id": "a", "kind": "generate", "inputs": {}}]}
    assert validator.is_valid(good)
    for bad in (
        {**good, "version": 2},
        {**good, "extra": 1},
        {"version": 1, "steps": [{"id": "A b", "kind": "generate"}]},
        {"version": 1, "steps": [{"id": "a", "kind": "teleport"}]},
        {"version": 1, "steps": [{"id": "a", "kind": "generate", "timeout_s": 0}]},
    ):
        assert not validator.is_valid(bad), bad


MOVED = {
    "library.md": ["As a library", "A workflow in Python"],
    "runs.md": ["Where a run goes", "Budgets and the LLM endpoint", "Settings"],
    "workers.md": ["Starting workers", "On GPUs"],
    "batching.md": ["Choosing the concurrency and threads", "On a GPU"],
    "seeing-a-run.md": ["Seeing a run"],
    "goals.md": ["Goals: the LLM plans, the SLM executes"],
    "architecture.md": ["Layout", "Layers and import rules", "Where this departs"],
    "benchmarks.md": ["Measured here"],
    "development.md": ["Set up and the checks", "Benchmarks", "Ranges for users"],
}
"""The README's old reference sections, by the docs page that now holds them."""
README_MAX_LINES = 200


def _readme_links() -> set[str]:
    return {t.partition("#")[0] for t in _links(ROOT / "README.md")}


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md: {len(lines)} lines; move reference to docs/"


@pytest.mark.parametrize("page", sorted(MOVED))
def test_each_moved_section_is_one_click_from_the_readme(page: str) -> None:
    assert f"docs/{page}" in _readme_links(), f"README.md does not link docs/{page}"
    headings = re.findall(r"^#+ (.+)$", (DOCS / page).read_text(encoding="utf-8"), re.MULTILINE)
    missing = [h for h in MOVED[page] if not any(x.startswith(h) for x in headings)]
    assert not missing, f"docs/{page} lacks the sections {missing}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    """The README's Documentation list names every page; a new page adds one line there."""
    missing = sorted(
        f"docs/{p.name}" for p in DOCS.glob("*.md") if f"docs/{p.name}" not in _readme_links()
    )
    assert not missing, f"README.md's Documentation list lacks {missing}"


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", setup, flags=re.DOTALL)
    assert len(blocks) == 2, "Set up shows two commands: the main job, then the tests"
    test_command = blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci, f".ci/run does not run the README's test command {test_command!r}"
