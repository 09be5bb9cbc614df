"""The evals' admin: suites with case inlines (bad cases refused on their field), "run now" (queued
for Celery after commit), each suite's score chart, the results page of an eval run, the
regression badge. The cases run on the offline model here (no model server, no judge)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agents_app.eval_models import EvalCase, EvalRun, EvalSuite
from agents_app.evals.runner import eval_run_execute_here

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def _form(agent: Any, **cases: Any) -> dict[str, Any]:
    data = {
        "slug": "offline-maths",
        "name": "Offline maths",
        "description": "",
        "agent": str(agent.pk),
        "team": "",
        "workflow": "",
        "pinned_version": "",
        "judge_model": "",
        "schedule": "",
        "cases-TOTAL_FORMS": "1",
        "cases-INITIAL_FORMS": "0",
        "cases-MIN_NUM_FORMS": "0",
        "cases-MAX_NUM_FORMS": "1000",
        "cases-0-position": "0",
        "cases-0-name": "adds",
        "cases-0-kind": "reliability",
        "cases-0-input": "What is 2+3?",
        "cases-0-expected_output": "",
        "cases-0-criteria": "",
        "cases-0-scoring": "numeric",
        "cases-0-threshold": "",
        "cases-0-expected_tool_calls": '[{"name": "calculator", "arguments": {"expression": "2+3"}}]',
        "cases-0-iterations": "1",
        "cases-0-warmup": "0",
    }
    data.update(cases)
    return data


def test_a_suite_with_a_bad_case_is_refused_on_the_field_then_saved(admin_client, offline_agent):
    url = reverse("admin:agents_app_evalsuite_add")
    response = admin_client.post(url, _form(offline_agent, **{"cases-0-expected_tool_calls": '["warp_drive"]'}))
    assert response.status_code == 200
    assert "Unknown tool &#x27;warp_drive&#x27;." in response.content.decode()
    response = admin_client.post(url, _form(offline_agent, **{"cases-0-input": ""}))
    assert response.status_code == 200 and not EvalSuite.objects.exists()
    offline_agent.is_active = False
    offline_agent.save()
    response = admin_client.post(url, _form(offline_agent))
    assert "is inactive: it refuses runs." in response.content.decode()
    offline_agent.is_active = True
    offline_agent.save()

    response = admin_client.post(url, _form(offline_agent))
    assert response.status_code == 302, response.content.decode()[:2000]
    case = EvalCase.objects.get()
    assert case.expected_tool_calls == [{"name": "calculator", "arguments": {"expression": "2+3"}}]


def test_run_now_queues_the_cases_and_the_pages_show_results_chart_and_badge(
    admin_client, offline_agent, django_capture_on_commit_callbacks
):
    suite = EvalSuite.objects.create(slug="offline-maths", name="Offline maths", agent=offline_agent)
    EvalCase.objects.create(
        suite=suite,
        kind="reliability",
        input="What is 2+3?",
        expected_tool_calls=[{"name": "calculator", "arguments": {"expression": "2+3"}}],
    )
    changelist = reverse("admin:agents_app_evalsuite_changelist")
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(changelist, {"action": "run_now", "_selected_action": [suite.pk]}, follow=True)
    assert "eval run" in response.content.decode() and "queued (1 cases)" in response.content.decode()
    assert len(callbacks) == 1  # one publish per eval run, after commit (not run here)
    run = EvalRun.objects.get()
    assert (run.status, run.trigger, run.created_by.username) == ("queued", "admin", "staff")

    run = eval_run_execute_here(run)  # what the worker would do
    assert (run.status, run.score) == ("passed", 100.0)

    page = admin_client.get(reverse("admin:agents_app_evalrun_change", args=[run.pk])).content.decode()
    for text in ("What is 2+3?", "calculator", "Every expected tool call was made, and no other.", "passed"):
        assert text in page
    page = admin_client.get(reverse("admin:agents_app_evalsuite_change", args=[suite.pk])).content.decode()
    assert 'data-chart="eval-suite-' in page and "score (% of cases passed)" in page and "<polyline" not in page

    # A second, worse run: the chart has a line, the list a badge.
    EvalCase.objects.create(suite=suite, kind="reliability", input="Tell a story", expected_tool_calls=["calculator"])
    worse = eval_run_execute_here(eval_run_start_admin(suite))
    assert (worse.status, worse.score, worse.regressed) == ("failed", 50.0, True)
    page = admin_client.get(reverse("admin:agents_app_evalsuite_change", args=[suite.pk])).content.decode()
    assert "<polyline" in page
    listing = admin_client.get(changelist).content.decode()
    assert "regressed" in listing and "failed 50%" in listing
    assert admin_client.get(reverse("admin:agents_app_evalrun_changelist") + "?regressed__exact=1").status_code == 200


def eval_run_start_admin(suite: EvalSuite) -> EvalRun:
    from agents_app.evals.services import eval_run_start

    return eval_run_start(suite=suite, trigger="admin", publish=False)


def test_the_dashboard_has_an_evals_section_with_last_score_and_trend(admin_client, offline_agent):
    suite = EvalSuite.objects.create(slug="offline-maths", name="Offline maths", agent=offline_agent)
    EvalCase.objects.create(suite=suite, kind="reliability", input="What is 2+3?", expected_tool_calls=["calculator"])
    EvalSuite.objects.create(slug="never-run", name="Never run", agent=offline_agent)
    eval_run_execute_here(eval_run_start_admin(suite))
    EvalCase.objects.create(suite=suite, kind="reliability", input="Tell a story", expected_tool_calls=["calculator"])
    eval_run_execute_here(eval_run_start_admin(suite))

    page = admin_client.get(reverse("telemetry_app:dashboard")).content.decode()
    section = page[page.index('<table id="evals">') :]
    section = section[: section.index("</table>")]
    assert "Offline maths" in section and "agent: offline" in section
    assert "failed" in section and "regressed" in section
    assert "100 → 50" in section and ">50%<" in section and ">100%<" in section
    assert 'data-suite="never-run"' in section


def test_two_eval_runs_are_compared_side_by_side(admin_client, offline_agent):
    from agents_app.models import ModelConfig

    suite = EvalSuite.objects.create(slug="offline-maths", name="Offline maths", agent=offline_agent)
    EvalCase.objects.create(suite=suite, kind="reliability", input="What is 2+3?", expected_tool_calls=["calculator"])
    other = ModelConfig.objects.create(name="offline-b", provider="offline", model_id="offline-b")
    from agents_app.evals.services import eval_run_start

    first = eval_run_execute_here(eval_run_start(suite=suite, publish=False))
    second = eval_run_execute_here(eval_run_start(suite=suite, model=other, publish=False))
    changelist = reverse("admin:agents_app_evalrun_changelist")
    page = admin_client.post(changelist, {"action": "compare", "_selected_action": [first.pk, second.pk]})
    text = page.content.decode()
    assert page.status_code == 200 and 'id="eval-compare"' in text
    assert "offline-demo" in text and "offline-b" in text and "passed 100%" in text
    one = admin_client.post(changelist, {"action": "compare", "_selected_action": [first.pk]}, follow=True)
    assert "Select exactly two eval runs of the same suite." in one.content.decode()
