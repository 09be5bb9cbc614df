"""Evals through the real stack: the target's runs go through the run pipeline and the `openai` SDK
against the scripted model server, which also plays the judge (structured output through the
project's model layer). Cases run in this thread (the command's foreground mode); the Celery path
has its own tests (tests/test_evals_api.py, tests/test_evals_celery.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from agents_app.eval_models import EvalCase, EvalCaseResult, EvalRun, EvalSuite
from agents_app.evals.runner import eval_run_execute_here
from agents_app.evals.services import case_check, eval_run_cancel, eval_run_start, suite_target_check
from sessions_app.errors import EvalInvalid, EvalRunFinished
from sessions_app.models import Run, Session
from sessions_app.selectors import session_list_for_user
from tests.factories import ModelConfigFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def judge(scripted_model: Any) -> Any:
    return ModelConfigFactory(
        name="judge",
        provider="openai",
        base_url=scripted_model.base_url,
        model_id="judge-model",
        api_key="sk-judge",
        timeout_seconds=5.0,
        max_retries=0,
    )


@pytest.fixture
def suite(agent: Any, judge: Any) -> EvalSuite:
    return EvalSuite.objects.create(slug="maths", name="Maths", agent=agent, judge_model=judge)


def _case(suite: EvalSuite, **fields: Any) -> EvalCase:
    fields.setdefault("input", "What is 2 + 2?")
    return EvalCase.objects.create(suite=suite, **fields)


def _run(suite: EvalSuite, user: Any = None) -> EvalRun:
    return eval_run_execute_here(eval_run_start(suite=suite, user=user, publish=False))


def test_accuracy_is_judged_over_iterations_with_mean_min_max_stdev(suite, scripted_model, staff_user):
    _case(suite, kind="accuracy", expected_output="4", iterations=2)
    scripted_model.push_text("It is 4.")
    scripted_model.push_json({"score": 10, "reason": "Exactly right."})
    scripted_model.push_text("Four, I think.")
    scripted_model.push_json({"score": 8, "reason": "Right, hedged."})

    run = _run(suite, staff_user)

    assert (run.status, run.score, run.cases_done, run.cases_passed) == ("passed", 100.0, 1, 1)
    result = run.results.get()
    assert (result.status, result.passed, result.score) == ("passed", True, 9.0)
    assert result.stats["scores"] == {"mean": 9.0, "min": 8.0, "max": 10.0, "stdev": 1.4142}
    assert result.actual == "Four, I think."
    assert result.reason == "Mean score 9 over 2 iteration(s) (>= 7). Right, hedged."
    assert [i["score"] for i in result.stats["iterations"]] == [10, 8]
    # The judge got the input, the expected and the actual answer, with a JSON schema to answer in.
    judge_request = scripted_model.requests[-1]
    assert judge_request["model"] == "judge-model"
    assert "The expected answer:\n4" in judge_request["messages"][-1]["content"]
    assert "Four, I think." in judge_request["messages"][-1]["content"]
    assert judge_request["response_format"]["json_schema"]["name"] == "eval_accuracy"
    # The evaluated runs are stored, normal runs, in sessions marked as an eval's, listed to nobody.
    runs = Run.objects.filter(pk__in=result.run_ids)
    assert [r.status for r in runs] == ["completed", "completed"]
    assert all(r.session.is_eval for r in runs)
    eval_user = runs[0].user
    assert eval_user.username == "agentos-evals" and not eval_user.has_usable_password()
    assert not session_list_for_user(user=eval_user).exists()
    assert not session_list_for_user(user=staff_user).exists()


def test_a_low_accuracy_score_fails_the_case_and_the_suite(suite, scripted_model):
    _case(suite, kind="accuracy", expected_output="4", threshold=6)
    scripted_model.push_text("5")
    scripted_model.push_json({"score": 2, "reason": "Wrong number."})

    run = _run(suite)

    assert (run.status, run.score) == ("failed", 0.0)
    result = run.results.get()
    assert (result.status, result.passed, result.score) == ("failed", False, 2.0)
    assert result.reason == "Mean score 2 over 1 iteration(s) (< 6). Wrong number."


@override_settings(AGENTOS={"EVALS_MAX_RETRIES": 0})
def test_a_failing_judge_marks_its_case_error_and_the_others_go_on(suite, scripted_model):
    _case(suite, kind="accuracy", expected_output="4", position=0)
    _case(suite, kind="reliability", input="Compute 2+2", expected_tool_calls=["calculator"], position=1)
    scripted_model.push_text("4")
    scripted_model.push_error(400, "judge refused")  # not retryable
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")

    run = _run(suite)

    assert run.status == "partial"
    first, second = run.results.order_by("position")
    assert first.status == "error" and first.passed is None
    assert first.reason.startswith("The judge model failed (model_bad_request): ")
    assert "judge refused" in first.reason
    assert first.actual == "4"  # what the target said is kept
    assert (second.status, second.passed) == ("passed", True)
    assert run.score == 100.0  # of the cases that could be judged


@override_settings(AGENTOS={"EVALS_MAX_RETRIES": 1, "EVALS_RETRY_SECONDS": 0.01})
def test_a_judge_timeout_is_retried_then_judged(suite, scripted_model):
    _case(suite, kind="agent_as_judge", criteria="Gives a number.", scoring="binary")
    scripted_model.push_text("4")
    scripted_model.push_error(503, "overloaded")
    scripted_model.push_text("4")
    scripted_model.push_json({"passed": True, "reason": "A number is given."})

    run = _run(suite)

    result = run.results.get()
    assert (run.status, result.status, result.attempts, result.score) == ("passed", "passed", 2, 1.0)
    assert result.reason == "Passed the criteria: A number is given."


def test_reliability_names_missing_unexpected_and_mismatched_calls(suite, scripted_model):
    suite.agent.tools = ["calculator", "current_time"]
    suite.agent.save()
    _case(
        suite,
        kind="reliability",
        input="Compute 2+2",
        expected_tool_calls=[{"name": "calculator", "arguments": {"expression": "2+2"}}],
        position=0,
    )
    _case(suite, kind="reliability", input="Compute 3*3", expected_tool_calls=["calculator"], position=1)
    _case(
        suite,
        kind="reliability",
        input="Compute 5-1",
        expected_tool_calls=[{"name": "calculator", "arguments": {"expression": "5-1"}}],
        position=2,
    )
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    scripted_model.push_tool_calls([{"name": "current_time", "arguments": {}}])
    scripted_model.push_text("It is late.")
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "5 - 2"}}])
    scripted_model.push_text("3")

    run = _run(suite)

    ok, wrong_tool, wrong_args = run.results.order_by("position")
    assert (ok.status, ok.tool_calls) == ("passed", [{"name": "calculator", "arguments": {"expression": "2+2"}}])
    assert wrong_tool.status == "failed"
    assert wrong_tool.reason == "Tool calls missing: calculator; unexpected: current_time."
    assert wrong_tool.stats["iterations"][0]["missing"] == ["calculator"]
    assert wrong_args.reason == "Tool calls other arguments: calculator."
    assert (run.status, run.score) == ("failed", 33.33)


def test_performance_measures_runs_after_warmup(suite, scripted_model):
    _case(suite, kind="performance", input="hi", iterations=3, warmup=1, threshold=30)
    for _ in range(4):
        scripted_model.push_text("hello there")

    run = _run(suite)

    result = run.results.get()
    assert result.status == "passed"
    assert len(result.run_ids) == 4 and len(result.stats["iterations"]) == 3
    latency = result.stats["latency"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["max"] < 30
    assert result.stats["output_tokens"] > 0 and result.stats["input_tokens"] > 0
    assert result.stats["memory_mb"]["max"] > 10
    assert "ttft" in result.stats
    assert result.reason.startswith("p50 ") and result.reason.endswith("over 3 run(s) (limit 30s).")


def test_a_failed_target_run_fails_the_case_with_its_error(suite, scripted_model):
    _case(suite, kind="accuracy", expected_output="4")
    scripted_model.push_error(401, "bad key")

    run = _run(suite)

    result = run.results.get()
    assert result.status == "failed"
    assert result.reason.startswith("The run ended error (model_auth_failed)")
    assert len(scripted_model.requests) == 1  # no judge for an answer that never came


def test_the_regression_flag_compares_with_the_suite_last_score(suite, scripted_model, caplog):
    _case(suite, kind="accuracy", expected_output="4")
    scripted_model.push_text("4")
    scripted_model.push_json({"score": 9, "reason": "ok"})
    first = _run(suite)
    scripted_model.push_text("5")
    scripted_model.push_json({"score": 1, "reason": "wrong"})
    with caplog.at_level("WARNING", logger="agents_app.evals.services"):
        second = _run(suite)

    assert (first.score, first.regressed) == (100.0, False)
    assert (second.score, second.previous_score, second.regressed) == (0.0, 100.0, True)
    assert "Eval suite maths regressed: score 0.0 below its last run's 100.0" in caplog.text


def test_the_regression_flag_compares_like_with_like(suite, judge, scripted_model, caplog):
    """A run is compared with the suite's last run of the same cases (or fewer: a case added since
    still counts) on the same model and version. A run of another case alone (agno's POST
    /os/eval-runs adds and runs one case each time), or a comparison run on another model, is no
    baseline: flagging it, or letting it hide a real drop later, would make the badge noise."""
    calc = _case(suite, kind="reliability", input="Compute 2+2", expected_tool_calls=["calculator"], position=0)
    story = _case(suite, kind="reliability", input="Tell a story", expected_tool_calls=["calculator"], position=1)

    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    one = eval_run_execute_here(eval_run_start(suite=suite, cases=[calc], publish=False))
    scripted_model.push_text("Once upon a time")
    other = eval_run_execute_here(eval_run_start(suite=suite, cases=[story], publish=False))
    assert (one.score, other.score) == (100.0, 0.0)
    assert (other.previous_score, other.regressed) == (None, False)  # another case: no baseline

    # The whole suite on the agent's own model: 50 %; then on another model: 0 %, with no baseline
    # of its own; then the own model again, at 0 %: compared with the own model's 50 %, not 0 %.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    scripted_model.push_text("Once upon a time")
    own = _run(suite)
    # Its baseline is the latest run of cases it ran too: the story alone (0 %).
    assert (own.score, own.previous_score, own.regressed) == (50.0, 0.0, False)
    scripted_model.push_text("4, by heart")
    scripted_model.push_text("Once upon a time")
    cheap = eval_run_execute_here(eval_run_start(suite=suite, model=judge, publish=False))
    assert (cheap.score, cheap.previous_score, cheap.regressed) == (0.0, None, False)
    scripted_model.push_text("4, by heart")
    scripted_model.push_text("Once upon a time")
    with caplog.at_level("WARNING", logger="agents_app.evals.services"):
        own_again = _run(suite)
    assert (own_again.score, own_again.previous_score, own_again.regressed) == (0.0, 50.0, True)
    assert "regressed: score 0.0 below its last run's 50.0" in caplog.text


def test_cancel_stops_queued_cases_and_refuses_twice(suite):
    _case(suite, kind="accuracy", expected_output="4")
    run = eval_run_start(suite=suite, publish=False)
    eval_run_cancel(run)
    run = eval_run_execute_here(run)
    assert run.status == "cancelled"
    assert EvalCaseResult.objects.get(eval_run=run).status == "cancelled"
    with pytest.raises(EvalRunFinished):
        eval_run_cancel(run)
    assert not Session.objects.filter(is_eval=True).exists()  # nothing ran


def test_deleting_a_running_eval_run_stops_its_case_quietly(suite, monkeypatch, caplog):
    """DELETE of a running eval run (or of its suite) removes its rows while a worker is in the
    middle of a case: the case must stop after its current iteration (not run every remaining one
    against the target's model) and end without an error in the worker's log."""
    from agents_app.evals import runner
    from agents_app.evals.services import eval_runs_delete
    from sessions_app.db import db_call

    _case(suite, kind="performance", iterations=5)
    run = eval_run_start(suite=suite, publish=False)
    result_id = EvalCaseResult.objects.get(eval_run=run).pk
    original = runner._target_run
    calls: list[int] = []

    async def then_delete(*args: Any, **kwargs: Any) -> Any:
        answer = await original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            await db_call(eval_runs_delete, [run.pk])
        return answer

    monkeypatch.setattr(runner, "_target_run", then_delete)
    with caplog.at_level("ERROR"):
        runner.eval_case_execute(result_id=result_id)
    assert len(calls) == 1
    assert not EvalRun.objects.filter(pk=run.pk).exists()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_bad_cases_and_targets_are_refused_naming_the_field(suite, agent):
    def field_of(**kwargs: Any) -> str:
        with pytest.raises(EvalInvalid) as info:
            case_check(suite=suite, **kwargs)
        return info.value.field  # type: ignore[return-value]

    assert field_of(kind="accuracy", input="  ", expected_output="4") == "input"
    assert field_of(kind="accuracy", input="hi") == "expected_output"
    assert field_of(kind="agent_as_judge", input="hi") == "criteria"
    assert field_of(kind="reliability", input="hi", expected_tool_calls=["no_such_tool"]) == "expected_tool_calls"
    assert field_of(kind="reliability", input="hi", expected_tool_calls=["text_stats"]) == "expected_tool_calls"
    assert field_of(kind="reliability", input="hi", expected_tool_calls=[{"name": "calculator", "x": 1}]) == (
        "expected_tool_calls"
    )
    assert case_check(suite=suite, kind="reliability", input="hi", expected_tool_calls=["calculator"]) == [
        {"name": "calculator"}
    ]
    agent.is_active = False
    agent.save()
    with pytest.raises(EvalInvalid) as info:
        suite_target_check(agent=agent)
    assert info.value.field == "agent"
    with pytest.raises(EvalInvalid):
        eval_run_start(suite=EvalSuite.objects.get(pk=suite.pk), publish=False)


def test_each_eval_run_emits_an_eval_telemetry_event_and_a_regression_says_so(suite, scripted_model, settings):
    from telemetry_app.models import TelemetryEvent
    from telemetry_app.services import telemetry_reset_launch

    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)
    _case(suite, kind="accuracy", expected_output="4")
    scripted_model.push_text("4")
    scripted_model.push_json({"score": 9, "reason": "ok"})
    first = _run(suite)
    scripted_model.push_text("5")
    scripted_model.push_json({"score": 2, "reason": "wrong"})
    second = _run(suite)
    telemetry_reset_launch(pending=False)

    events = [e.payload for e in TelemetryEvent.objects.filter(event_type="eval").order_by("created_at")]
    assert [(e["run_id"], e["component_id"], e["status"], e["error_type"]) for e in events] == [
        (str(first.pk), "maths", "completed", ""),
        (str(second.pk), "maths", "completed", "eval_regressed"),
    ]
    assert events[0]["model"] == "judge-model" and events[0]["input_tokens"] > 0
    # The evaluated runs' own events are the agent's, as for any run.
    assert TelemetryEvent.objects.filter(event_type="agent").count() == 2


def test_scheduled_suites_start_when_due_and_not_twice_in_a_period(suite, agent):
    from datetime import timedelta

    from django.utils import timezone

    from agents_app.evals.services import eval_schedules_run

    _case(suite, kind="performance", input="hi")
    other = EvalSuite.objects.create(slug="unscheduled", name="Unscheduled", agent=agent)
    _case(other, kind="performance", input="hi")
    suite.schedule = "nightly"
    suite.save()

    assert eval_schedules_run() == 1
    assert eval_schedules_run() == 0  # within the night
    run = EvalRun.objects.get()
    assert (run.suite, run.trigger, run.status) == (suite, "schedule", "queued")
    assert eval_schedules_run(now=timezone.now() + timedelta(hours=25)) == 1
    assert not EvalRun.objects.filter(suite=other).exists()


def test_one_suite_on_two_model_configs_side_by_side(suite, judge, scripted_model, user):
    from agents_app.evals.services import eval_runs_compare
    from agents_app.runs import run_agent

    _case(suite, kind="reliability", input="Compute 2+2", expected_tool_calls=["calculator"], position=0)
    _case(suite, kind="performance", input="hi", position=1)
    # The agent's own model calls the tool; the other model answers without it.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    scripted_model.push_text("hello")
    own = _run(suite)
    scripted_model.push_text("4, by heart")
    scripted_model.push_text("hello")
    other = eval_run_execute_here(eval_run_start(suite=suite, model=judge, publish=False))

    assert [r["model"] for r in scripted_model.requests] == ["scripted-model"] * 3 + ["judge-model"] * 2
    assert (own.target_model, other.target_model) == ("scripted-model", "judge-model")
    runs = Run.objects.filter(pk__in=other.results.get(position=0).run_ids)
    assert [r.model for r in runs] == ["judge-model"]
    comparison = eval_runs_compare(own, other)
    assert (comparison["first"]["score"], comparison["second"]["score"]) == (100.0, 50.0)
    assert (comparison["first"]["model"], comparison["second"]["model"]) == ("scripted-model", "judge-model")
    first_case, second_case = comparison["cases"]
    assert (first_case["first"]["status"], first_case["second"]["status"], first_case["same"]) == (
        "passed",
        "failed",
        False,
    )
    assert second_case["same"] is True
    # The agent itself (and its cached copy) still answers with its own model.
    scripted_model.push_text("still me")
    run_agent(agent_id=suite.agent.slug, user=user, message="hi")
    assert scripted_model.requests[-1]["model"] == "scripted-model"
    # A workflow has no model to replace.
    from tests.factories import WorkflowFactory

    flow = EvalSuite.objects.create(slug="flow", name="Flow", workflow=WorkflowFactory())
    _case(flow, kind="performance", input="hi")
    with pytest.raises(EvalInvalid) as info:
        eval_run_start(suite=flow, model=judge, publish=False)
    assert info.value.field == "model"


def test_rest_starts_a_run_on_another_model_and_compares_two_runs(suite, judge, scripted_model, client, staff_user):
    client.force_login(staff_user)
    case = _case(suite, kind="performance", input="hi")
    first = client.post("/api/evals/maths/runs", {}, content_type="application/json")
    second = client.post("/api/evals/maths/runs", {"model": judge.pk}, content_type="application/json")
    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.json()["target_model"], second.json()["target_model"]) == ("scripted-model", "judge-model")
    assert second.json()["model_override"] == judge.pk
    for body in (first.json(), second.json()):
        eval_run_execute_here(EvalRun.objects.get(pk=body["id"]))

    r = client.get(f"/api/evals/maths/compare?first={first.json()['id']}&second={second.json()['id']}")
    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["first"]["model"], data["second"]["model"]) == ("scripted-model", "judge-model")
    assert data["cases"][0]["case"] == case.pk and data["cases"][0]["same"] is True
    r = client.get("/api/evals/maths/compare?first=nope")
    assert r.status_code == 400 and set(r.json()) >= {"first", "second", "code"}
    r = client.post("/api/evals/maths/runs", {"model": 99999}, content_type="application/json")
    assert r.status_code == 400 and "model" in r.json()


@override_settings(AGENTOS={"EVALS_MAX_RETRIES": 1})
def test_the_sweep_brings_back_lost_cases_and_ends_dead_ones(suite, django_capture_on_commit_callbacks, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from agents_app.evals import services

    published: list[list[int]] = []
    monkeypatch.setattr(services, "eval_cases_publish", lambda *, result_ids, **kw: published.append(result_ids))
    _case(suite, kind="performance", input="hi", position=0)
    _case(suite, kind="performance", input="hi", position=1)
    run = eval_run_start(suite=suite, publish=False, trigger="api")
    lost, dead = run.results.order_by("position")
    long_ago = timezone.now() - timedelta(hours=2)
    EvalCaseResult.objects.filter(pk=dead.pk).update(status="running", started_at=long_ago, attempts=1)
    assert services.eval_cases_sweep() == 1  # the dead one is queued again; the lost one is too recent
    assert published == [[dead.pk]]
    later = timezone.now() + timedelta(minutes=10)
    EvalCaseResult.objects.filter(pk=dead.pk).update(status="running", started_at=long_ago, attempts=2)
    assert services.eval_cases_sweep(now=later) == 2
    assert published[-1] == [lost.pk]
    dead.refresh_from_db()
    assert (dead.status, dead.error) == ("error", "worker_lost")
    EvalCaseResult.objects.filter(pk=lost.pk).update(status="passed", passed=True)
    services.eval_run_progress(eval_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "partial"  # ended, not hanging


def test_a_suite_pinned_to_a_version_runs_the_target_as_that_version_configured_it(suite, agent, scripted_model):
    from agents_app.cache import agent_cache_clear
    from agents_app.versions import record_version

    agent.instructions = "Answer as version one."
    agent.save()
    first = record_version(agent, author=None, source="api")
    agent.instructions = "Answer as version two."
    agent.save()
    agent_cache_clear()
    record_version(agent, author=None, source="api")
    # An unknown version is refused naming the field; an existing one is accepted.
    with pytest.raises(EvalInvalid) as refused:
        from agents_app.evals.services import suite_version_check

        suite_version_check(pinned_version=first.number + 5, agent=agent)
    assert refused.value.field == "pinned_version"
    suite.pinned_version = first.number
    suite.save()
    _case(suite, kind="reliability", expected_tool_calls=[])
    scripted_model.push_text("4")

    run = _run(suite)

    result = run.results.get()
    target_run = Run.objects.select_related("config_version").get(pk=result.run_ids[0])
    assert target_run.config_version.number == first.number
    system = scripted_model.requests[-1]["messages"][0]["content"]
    assert "Answer as version one." in system and "version two" not in system


def test_one_suite_on_two_configuration_versions_side_by_side(suite, agent, scripted_model, client, staff_user):
    """The question before a change ships: the same cases on version 1 and version 2 of the target."""
    from agents_app.cache import agent_cache_clear
    from agents_app.versions import record_version

    agent.instructions = "Old instructions."
    agent.save()
    old = record_version(agent, author=None, source="api")
    agent.instructions = "New instructions."
    agent.save()
    agent_cache_clear()
    new = record_version(agent, author=None, source="api")
    case = _case(suite, kind="reliability", input="Compute 2+2", expected_tool_calls=["calculator"])
    client.force_login(staff_user)
    first = client.post("/api/evals/maths/runs", {"version": old.number}, content_type="application/json")
    second = client.post("/api/evals/maths/runs", {"version": new.number}, content_type="application/json")
    assert (first.status_code, second.status_code) == (202, 202), (first.content, second.content)
    assert (first.json()["config_version"], second.json()["config_version"]) == (old.number, new.number)
    # Version 1 calls the tool; version 2 answers without it.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    eval_run_execute_here(EvalRun.objects.get(pk=first.json()["id"]))
    scripted_model.push_text("4, by heart")
    eval_run_execute_here(EvalRun.objects.get(pk=second.json()["id"]))
    systems = [r["messages"][0]["content"] for r in scripted_model.requests]
    assert "Old instructions." in systems[0] and "New instructions." in systems[-1]

    r = client.get(f"/api/evals/maths/compare?first={first.json()['id']}&second={second.json()['id']}")
    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["first"]["version"], data["second"]["version"]) == (old.number, new.number)
    assert (data["first"]["score"], data["second"]["score"]) == (100.0, 0.0)
    assert data["cases"][0]["case"] == case.pk and data["cases"][0]["same"] is False
    # A version the target does not have is refused naming the field; nothing is queued.
    before = EvalRun.objects.count()
    r = client.post("/api/evals/maths/runs", {"version": new.number + 7}, content_type="application/json")
    assert r.status_code == 400 and r.json()["code"] == "invalid_eval" and "version" in r.json()
    assert EvalRun.objects.count() == before


def test_agno_cases_go_to_a_suite_of_their_own_target_even_if_the_slug_is_taken(offline_agent, staff_user):
    """agno's POST /os/eval-runs keeps its cases in `agno-agent-<id>`. If an operator already named
    another suite so (on another agent), or two long ids cut to the same slug, the case must still
    run against the agent agno named, never the other suite's target."""
    from agents_app.agno_compat.eval_views import agno_case_start
    from tests.factories import AgentFactory

    other = AgentFactory(slug="other", name="Other", tools=["calculator"])
    EvalSuite.objects.create(slug="agno-agent-offline", name="Mine", agent=other)
    body = {"eval_type": "performance", "input": "hi", "agent_id": "offline"}

    run = agno_case_start(user=staff_user, body=body)
    assert run.suite.agent == offline_agent and run.suite.slug != "agno-agent-offline"
    again = agno_case_start(user=staff_user, body=body)
    assert again.suite == run.suite  # found again, not a new suite each time
    assert EvalSuite.objects.get(slug="agno-agent-offline").agent == other
    assert not EvalCase.objects.filter(suite__agent=other).exists()


def test_a_reliability_case_of_a_pinned_suite_is_checked_against_the_pinned_tools(suite, agent):
    """A suite pinned to a version runs the agent with that version's tools: a case expecting a tool
    the version has (and the agent no longer) can pass, one the version lacks never could."""
    from agents_app.versions import record_version

    agent.tools = ["calculator", "text_stats"]
    agent.save()
    pinned = record_version(agent, source="api")
    agent.tools = ["calculator", "current_time"]
    agent.save()
    record_version(agent, source="api")
    suite.pinned_version = pinned.number
    suite.save()

    assert case_check(suite=suite, kind="reliability", input="hi", expected_tool_calls=["text_stats"]) == [
        {"name": "text_stats"}
    ]
    with pytest.raises(EvalInvalid) as info:
        case_check(suite=suite, kind="reliability", input="hi", expected_tool_calls=["current_time"])
    assert info.value.field == "expected_tool_calls" and f"Version {pinned.number} of the agent" in str(
        info.value.detail
    )


def test_an_eval_runs_counts_never_go_down_when_two_cases_finish_at_once(suite):
    """The count read before another case's commit may be written after it: the stored counts keep
    the larger value."""
    from agents_app.evals.services import eval_run_progress

    _case(suite, kind="reliability", expected_tool_calls=[])
    _case(suite, kind="reliability", expected_tool_calls=[], position=1)
    run = eval_run_start(suite=suite, publish=False)
    EvalRun.objects.filter(pk=run.pk).update(cases_done=2, cases_passed=2)  # the other case's later write
    run = eval_run_progress(eval_run_id=run.pk)  # this one counted nothing finished yet
    assert (run.cases_done, run.cases_passed) == (2, 2)
