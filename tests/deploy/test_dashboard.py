"""The Grafana dashboard in deploy/grafana: it parses, it has a panel for each metric in
docs/operations.md, and every metric it queries is one real workers export: a `slm`
worker and a `runs` worker, each scraped on its own /metrics after a submitted run."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskloom.testing.server import Reply, ScriptedServer
from tests.conftest import free_port
from tests.workers.redis_helpers import Spawn, spawn_worker, taskloom
from tests.workers.supervisor_helpers import metric

__all__ = ["spawn_worker"]
ROOT = Path(__file__).resolve().parent.parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "taskloom.json"
EXAMPLES = ROOT / "examples"
METRIC = re.compile(r"\btaskloom_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def queried(panel: dict[str, Any]) -> set[str]:
    return {m for t in panel["targets"] for m in METRIC.findall(t["expr"])}


def documented() -> list[str]:
    """The metrics docs/operations.md's table lists, as exported (counters with _total)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return re.findall(r"^\| `(taskloom_[a-z_]+)` \|", text, flags=re.MULTILINE)


def exported(text: str) -> set[str]:
    """Every sample name a /metrics page can carry, from its `# TYPE` lines: a family
    is listed even before it has a sample."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        if name.endswith("_created"):  # prometheus-client's creation times, not metrics
            continue
        names |= {name.removesuffix("_total") + s for s in SUFFIXES.get(kind, ("",))}
    return names


def base(name: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", name)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def test_the_dashboard_parses_and_each_documented_metric_has_a_panel() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert {v["name"] for v in dash["templating"]["list"]} >= {"datasource", "instance"}
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert p["description"], p["title"]
    docs = documented()
    assert len(docs) >= 12
    lacking = [
        m for m in docs if not any(base(m) in {base(q) for q in queried(p)} for p in panels())
    ]
    assert not lacking, f"no panel queries {lacking}"


def test_the_provisioning_file_loads_the_dashboard_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "taskloom.yaml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards/taskloom"
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert sources["datasources"][0]["type"] == "prometheus"


@pytest.mark.timeout(180)
def test_every_queried_metric_is_exported_by_real_workers(
    redis_url: str, spawn_worker: Spawn, taskloom_home: Path
) -> None:
    slm_port, runs_port = free_port(), free_port()
    # The runs worker escalates every SLM step (below confidence 1) to a real HTTP
    # endpoint, so the escalation counter has samples to check against the record.
    with ScriptedServer(respond=lambda body: Reply(text="{}")) as llm:
        spawn_worker("--metrics-port", str(slm_port))
        llm_env = {"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "test"}
        spawn_worker(
            "--queue",
            "runs",
            "--metrics-port",
            str(runs_port),
            env={**llm_env, "TASKLOOM_ESCALATE_BELOW": "1.0"},
        )
        submitted = taskloom(
            "submit",
            str(EXAMPLES / "triage.json"),
            "--input",
            f"@{EXAMPLES / 'triage_input.json'}",
            "--redis-url",
            redis_url,
        )
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.strip()
        done = taskloom(
            "result", run_id, "--wait", "--json", "--redis-url", redis_url, timeout_s=120
        )
        assert done.returncode in (0, 1), done.stderr
        record = json.loads(done.stdout)
    slm, runs = scrape(slm_port), scrape(runs_port)
    names = exported(slm) | exported(runs)
    asked = set().union(*(queried(p) for p in panels()))
    assert asked - names == set(), (
        f"the dashboard queries metrics no worker exports: {asked - names}"
    )
    ours = {base(n).removesuffix("_total") for n in names if n.startswith("taskloom_")}
    docs = {base(m).removesuffix("_total") for m in documented()}
    assert ours == docs, f"docs/operations.md's table and /metrics differ: {ours ^ docs}"
    # The samples are the run's, not only their names: each step ran once on the SLM
    # worker, and an escalation that the LLM answered counts one attempt more.
    escalations = record["escalations"]
    answered = sum(e["status"] == "done" for e in escalations)
    attempts = sum(s["attempts"] for s in record["steps"])
    assert (
        metric(slm, "taskloom_steps_started_total") == attempts - answered == len(record["steps"])
    )
    assert escalations, "the run escalated nothing; the counter would be checked against zero"
    assert metric(runs, "taskloom_escalations_total") == len(escalations)
    for entry in escalations:
        labels = {"kind": entry["kind"], "status": entry["status"]}
        expected = sum(
            e["kind"] == entry["kind"] and e["status"] == entry["status"] for e in escalations
        )
        assert metric(runs, "taskloom_escalations_total", **labels) == expected
