"""`taskloom route --goal`: the router's decision, nothing run, no LLM endpoint needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskloom.cli import main

SIMPLE = "Translate 'see you tomorrow' into Dutch."
COMPLEX = (
    "Collect the invoices from the three regional offices, check every line against "
    "the contracts, then write a summary of the overcharges for each office."
)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


@pytest.fixture
def no_endpoint(monkeypatch: pytest.MonkeyPatch, taskloom_home: Path) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.mark.model
@pytest.mark.timeout(600)
def test_route_on_the_real_model(no_endpoint: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "route", "--goal", SIMPLE, "--json")
    assert code == 0, err
    simple = json.loads(out)
    assert simple["target"] == "slm", simple
    assert set(simple["signals"]["slm"]) >= {"label", "confidence"}  # the model was asked
    code, out, err = cli(
        capsys, "route", "--goal", COMPLEX, "--input", '{"invoices": "..."}', "--json"
    )
    assert code == 0, err
    complex_ = json.loads(out)
    assert complex_["target"] == "llm", complex_
    assert complex_["score"] > simple["score"]
    code, out, err = cli(capsys, "route", "--goal", COMPLEX)
    assert code == 0, err
    assert out.startswith("llm (score ") and "threshold 0.50" in out, out


def test_route_text_names_target_score_and_reason(
    no_endpoint: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKLOOM_MODEL", "scripted")  # the routing logic, not the model
    code, out, err = cli(capsys, "route", "--goal", SIMPLE)
    assert code == 0, err
    assert out.startswith("slm (score 0."), out
    assert "threshold 0.50" in out and "strongest feature: " in out
    code, out, err = cli(capsys, "route", "--goal", SIMPLE, "--route-threshold", "0.01")
    assert code == 0, err
    assert out.startswith("llm (score 0."), out  # the same score, at or above 0.01
    assert "threshold 0.01" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["route"], "pass --goal"),
        (["route", "--goal", "  "], "goal"),
        (["route", "--goal", SIMPLE, "--input", "{not json"], "--input"),
        (["route", "--goal", SIMPLE, "--input", "[1, 2]"], "JSON object"),
        (["route", "--goal", SIMPLE, "--input", "@/nonexistent/inputs.json"], "--input"),
        (["route", "--goal", SIMPLE, "--route-threshold", "2"], "--route-threshold"),
    ],
)
def test_route_bad_input_is_exit_2_in_one_line(
    no_endpoint: None, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskloom: error: "), err
    assert says in lines[0], err
