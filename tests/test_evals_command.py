"""`manage.py agentos_eval`: the demo's suite passes on the offline model (exit 0, a results table,
the JSON output), a failing suite exits 1, --fail-under decides by score, an unknown suite exits 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents_app.eval_models import EvalCase, EvalRun, EvalSuite

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo() -> None:
    call_command("agentos_demo", stdout=io.StringIO())


def test_the_demo_suite_passes_on_the_offline_model(demo, tmp_path: Path):
    out = io.StringIO()
    report = tmp_path / "evals.json"
    call_command("agentos_eval", "demo-evals", "--json-output", str(report), stdout=out)

    text = out.getvalue()
    assert "demo-evals: passed 100% (4/4 passed)" in text
    assert "OK demo-evals: passed 100%" in text
    assert "0:00:" not in text and "\x1b[" not in text  # not a terminal: no progress bar, no colours
    (run,) = json.loads(report.read_text())
    assert (run["status"], run["score"], run["trigger"]) == ("passed", 100.0, "command")
    assert [r["status"] for r in run["results"]] == ["passed"] * 4
    reliability, accuracy, judged, performance = run["results"]
    assert reliability["tool_calls"] == [{"name": "calculator", "arguments": {"expression": "6*7"}}]
    assert "42" in accuracy["actual"] and accuracy["stats"]["scores"]["mean"] == 10
    assert judged["score"] == 1.0
    assert len(performance["stats"]["iterations"]) == 5 and performance["stats"]["latency"]["p95"] < 5
    # Running the demo command again changes nothing.
    call_command("agentos_demo", stdout=io.StringIO())
    assert EvalSuite.objects.count() == 1 and EvalCase.objects.count() == 4


def test_a_failing_case_exits_1_and_fail_under_decides_by_score(demo):
    suite = EvalSuite.objects.get(slug="demo-evals")
    EvalCase.objects.create(
        suite=suite, position=9, kind="reliability", input="Tell me a story.", expected_tool_calls=["calculator"]
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("agentos_eval", "demo-evals", stdout=out)
    assert exit_info.value.code == 1
    assert "FAILED demo-evals: failed 80%" in out.getvalue()
    assert "Tool calls missing: calculator." in out.getvalue()

    call_command("agentos_eval", "demo-evals", "--fail-under", "80", stdout=io.StringIO())  # 80% >= 80: exit 0
    with pytest.raises(SystemExit):
        call_command("agentos_eval", "demo-evals", "--fail-under", "90", stdout=io.StringIO())
    assert EvalRun.objects.filter(trigger="command").count() == 3


def test_an_unknown_suite_is_an_error(demo):
    with pytest.raises(CommandError, match="No eval suite 'nope'"):
        call_command("agentos_eval", "demo-evals", "nope", stdout=io.StringIO())
    assert not EvalRun.objects.exists()


def test_compare_models_runs_each_suite_on_both_side_by_side(demo, tmp_path: Path):
    from agents_app.models import ModelConfig

    ModelConfig.objects.create(name="offline-b", provider="offline", model_id="offline-b")
    out = io.StringIO()
    report = tmp_path / "compare.json"
    call_command(
        "agentos_eval",
        "demo-evals",
        "--compare-models",
        "offline",
        "offline-b",
        "--json-output",
        str(report),
        stdout=out,
    )
    text = out.getvalue()
    assert "demo-evals: offline-demo vs offline-b" in text
    data = json.loads(report.read_text())
    assert [r["status"] for r in data["eval_runs"]] == ["passed", "passed"]
    (comparison,) = data["comparisons"]
    assert (comparison["first"]["model"], comparison["second"]["model"]) == ("offline-demo", "offline-b")
    assert len(comparison["cases"]) == 4 and all(row["same"] for row in comparison["cases"])
    with pytest.raises(CommandError, match="No model config named 'nope'"):
        call_command("agentos_eval", "demo-evals", "--compare-models", "offline", "nope", stdout=io.StringIO())


def test_compare_versions_runs_each_suite_as_both_versions(demo, tmp_path: Path):
    from agents_app.models import Agent
    from agents_app.versions import record_version

    agent = Agent.objects.get(slug="demo")
    first = record_version(agent, author=None, source="api") or agent.versions.order_by("-number").first()
    agent.instructions = agent.instructions + "\nBe brief."
    agent.save()
    second = record_version(agent, author=None, source="api")
    report = tmp_path / "versions.json"
    out = io.StringIO()
    call_command(
        "agentos_eval",
        "demo-evals",
        "--compare-versions",
        str(first.number),
        str(second.number),
        "--json-output",
        str(report),
        stdout=out,
    )
    assert f"demo-evals: offline-demo v{first.number} vs offline-demo v{second.number}" in out.getvalue()
    (comparison,) = json.loads(report.read_text())["comparisons"]
    assert (comparison["first"]["version"], comparison["second"]["version"]) == (first.number, second.number)
    with pytest.raises(CommandError, match="no saved version 99"):
        call_command("agentos_eval", "demo-evals", "--compare-versions", "1", "99", stdout=io.StringIO())


def test_a_suite_or_version_that_cannot_run_is_refused_before_anything_runs(demo, tmp_path: Path):
    """Exit 2 must come before any case runs: a CI job that names a wrong version (or a second suite
    that has no case) gets its answer at once, not after the first suite's whole run."""
    from agents_app.models import Agent
    from agents_app.versions import record_version

    assert record_version(Agent.objects.get(slug="demo"), author=None, source="api").number == 1
    with pytest.raises(CommandError) as refused:
        call_command("agentos_eval", "demo-evals", "--compare-versions", "1", "99", stdout=io.StringIO())
    assert refused.value.returncode == 2 and "no saved version 99" in str(refused.value)
    assert not EvalRun.objects.exists()

    suite = EvalSuite.objects.get(slug="demo-evals")
    EvalSuite.objects.create(slug="empty", name="Empty", agent=suite.agent)
    with pytest.raises(CommandError) as refused:
        call_command("agentos_eval", "demo-evals", "empty", stdout=io.StringIO())
    assert refused.value.returncode == 2 and "empty" in str(refused.value)
    assert not EvalRun.objects.exists()


def test_an_unwritable_json_output_is_refused_before_anything_runs(demo, tmp_path: Path):
    with pytest.raises(CommandError) as refused:
        call_command(
            "agentos_eval",
            "demo-evals",
            "--json-output",
            str(tmp_path / "no" / "such" / "x.json"),
            stdout=io.StringIO(),
        )
    assert refused.value.returncode == 2 and "--json-output" in str(refused.value)
    assert not EvalRun.objects.exists()
