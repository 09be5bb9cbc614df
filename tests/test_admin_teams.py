"""The team and workflow admins: pages render, members and steps are edited inline with plain
validation, and a team run's member runs show on the run's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from agents_app.models import Team, TeamMember, Workflow, WorkflowStep
from agents_app.runs import arun_team
from sessions_app.models import Run
from tests.factories import AgentFactory, ModelConfigFactory, TeamFactory, TeamMemberFactory, WorkflowFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def inline_management(prefix: str, total: int, initial: int = 0) -> dict[str, Any]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def team_form(
    model: Any,
    rows: dict[str, Any],
    *,
    slug: str = "pair",
    name: str = "Pair",
    mode: str = "collaborate",
    instructions: str = "Combine.",
    memberships: int = 0,
    hooks: int = 0,
    fallbacks: int = 0,
) -> dict[str, Any]:
    """The admin's team add form, filled: the team's fields, the three inlines' management forms
    (`memberships`, `hooks`, `fallbacks` rows, none initial) and the inline `rows` given."""
    return {
        "slug": slug,
        "name": name,
        "description": "",
        "is_active": "on",
        "busy_session_policy": "queue",
        "access": "everyone",
        "model": model.pk,
        "mode": mode,
        "instructions": instructions,
        "history_runs": "3",
        "max_depth": "2",
        "max_member_calls": "8",
        **inline_management("memberships", memberships),
        **inline_management("hooks", hooks),
        **inline_management("fallbacks", fallbacks),
        **rows,
    }


def test_a_team_is_created_with_its_members_inline(admin_client):
    model = ModelConfigFactory(name="offline")
    a = AgentFactory(slug="a", model=model)
    b = AgentFactory(slug="b", model=model)
    data = team_form(
        model,
        {
            "memberships-0-order": "0",
            "memberships-0-agent": a.pk,
            "memberships-0-role": "first",
            "memberships-1-order": "1",
            "memberships-1-agent": b.pk,
        },
        memberships=2,
    )
    r = admin_client.post(reverse("admin:agents_app_team_add"), data)
    assert r.status_code == 302, r.content.decode()[:3000]
    team = Team.objects.get(slug="pair")
    assert [(m.agent.slug, m.role) for m in team.memberships.order_by("order")] == [("a", "first"), ("b", "")]


def test_team_limits_are_validated_in_plain_words(admin_client):
    model = ModelConfigFactory(name="offline")
    data = {
        "slug": "wild",
        "name": "Wild",
        "model": model.pk,
        "mode": "coordinate",
        "history_runs": "3",
        "max_depth": "9",
        "max_member_calls": "0",
        **inline_management("memberships", 0),
        **inline_management("hooks", 0),
        **inline_management("fallbacks", 0),
    }
    r = admin_client.post(reverse("admin:agents_app_team_add"), data)
    assert r.status_code == 200
    errors = r.context["adminform"].form.errors
    assert errors["max_depth"] == ["Ensure this value is less than or equal to 5."]
    assert errors["max_member_calls"] == ["Ensure this value is greater than or equal to 1."]


def test_a_team_cannot_contain_a_team_that_contains_it():
    model = ModelConfigFactory(name="offline")
    outer = TeamFactory(slug="outer", model=model)
    inner = TeamFactory(slug="inner", model=model)
    TeamMemberFactory(team=outer, member_team=inner)
    loop = TeamMember(team=inner, member_team=outer)
    with pytest.raises(Exception, match="would loop"):
        loop.full_clean()


def test_a_workflow_is_created_with_steps_and_step_functions_are_checked(admin_client):
    model = ModelConfigFactory(name="offline")
    agent = AgentFactory(slug="w", model=model)
    data = {
        "slug": "flow",
        "name": "Flow",
        "description": "",
        "is_active": "on",
        "busy_session_policy": "queue",
        "access": "everyone",
        **inline_management("steps", 2),
        "steps-0-order": "0",
        "steps-0-name": "ask",
        "steps-0-kind": "agent",
        "steps-0-agent": agent.pk,
        "steps-0-args": "{}",
        "steps-1-order": "1",
        "steps-1-name": "keep",
        "steps-1-kind": "function",
        "steps-1-function": "remember_output",
        "steps-1-args": '{"key": "answer"}',
    }
    r = admin_client.post(reverse("admin:agents_app_workflow_add"), data)
    assert r.status_code == 302, r.content.decode()[:3000]
    steps = list(Workflow.objects.get(slug="flow").steps.order_by("order").values_list("name", "kind", "function"))
    assert steps == [("ask", "agent", ""), ("keep", "function", "remember_output")]

    bad = {
        **data,
        "slug": "flow2",
        "steps-0-name": "a2",
        "steps-1-name": "k2",
        "steps-1-function": "",
        "steps-0-agent": "",
    }
    r = admin_client.post(reverse("admin:agents_app_workflow_add"), bad)
    assert r.status_code == 200
    formset_errors = r.context["inline_admin_formsets"][0].formset.errors
    assert formset_errors[0] == {"agent": ["An agent step needs an agent."]}
    assert formset_errors[1] == {"function": ["This kind of step needs a registered function."]}


def test_pages_render_and_a_team_runs_member_runs_show_on_its_run_page(admin_client, staff_user):
    model = ModelConfigFactory(name="offline")
    member = AgentFactory(slug="member", model=model)
    team = TeamFactory(slug="crew", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=member)
    workflow = WorkflowFactory(slug="flow")
    WorkflowStep.objects.create(workflow=workflow, name="ask", kind="agent", agent=member)
    from asgiref.sync import async_to_sync

    result = async_to_sync(arun_team)(team_id="crew", user=staff_user, message="hello")
    assert result["status"] == "completed", result
    parent = Run.objects.get(pk=result["run_id"])
    child = Run.objects.get(parent_run=parent)
    for url in [
        reverse("admin:agents_app_team_changelist"),
        reverse("admin:agents_app_team_add"),
        reverse("admin:agents_app_team_change", args=[team.pk]),
        reverse("admin:agents_app_workflow_changelist"),
        reverse("admin:agents_app_workflow_add"),
        reverse("admin:agents_app_workflow_change", args=[workflow.pk]),
        reverse("admin:sessions_app_run_changelist"),
        reverse("admin:sessions_app_session_change", args=[parent.session_id]),
        reverse("admin:sessions_app_session_changelist"),
    ]:
        assert admin_client.get(url).status_code == 200, url
    page = admin_client.get(reverse("admin:sessions_app_run_change", args=[parent.pk])).content.decode()
    assert "Member and step runs of this run" in page and str(child.pk)[:8] in page
    child_page = admin_client.get(reverse("admin:sessions_app_run_change", args=[child.pk])).content.decode()
    assert str(parent.pk)[:8] in child_page


def test_steps_are_nested_under_a_condition_step_of_the_same_workflow(admin_client):
    workflow = WorkflowFactory(slug="gated")
    gate = WorkflowStep.objects.create(
        workflow=workflow, name="gate", kind="condition", function="state_flag", args={"key": "go"}, order=0
    )
    other = WorkflowFactory(slug="other")
    foreign = WorkflowStep.objects.create(workflow=other, name="foreign", kind="parallel", order=0)
    url = reverse("admin:agents_app_workflow_change", args=[workflow.pk])
    page = admin_client.get(url).content.decode()
    # (The options by their labels: other selects on the page, users and groups, have numbered values too.)
    assert f">{gate}</option>" in page and f">{foreign}</option>" not in page
    data = {
        "slug": "gated",
        "name": "Gated",
        "description": "",
        "is_active": "on",
        "busy_session_policy": "queue",
        "access": "everyone",
        **inline_management("steps", 2, initial=1),
        "steps-0-id": gate.pk,
        "steps-0-workflow": workflow.pk,
        "steps-0-order": "0",
        "steps-0-name": "gate",
        "steps-0-kind": "condition",
        "steps-0-function": "state_flag",
        "steps-0-args": '{"key": "go"}',
        "steps-1-workflow": workflow.pk,
        "steps-1-order": "0",
        "steps-1-name": "inside",
        "steps-1-kind": "function",
        "steps-1-function": "remember_output",
        "steps-1-parent": gate.pk,
        "steps-1-args": "{}",
    }
    r = admin_client.post(url, data)
    assert r.status_code == 302, r.content.decode()[:3000]
    inside = WorkflowStep.objects.get(workflow=workflow, name="inside")
    assert inside.parent_id == gate.pk


# ---- try it, for teams and workflows ---------------------------------------------------------


def _answer(html: str) -> str:
    """The text of the page's answer block."""
    start = html.index('id="try-answer">') + len('id="try-answer">')
    return html[start : html.index("</div>", start)]


def test_try_it_runs_a_team_and_continues_its_conversation(admin_client, staff_user):
    model = ModelConfigFactory(name="offline")
    writer = AgentFactory(slug="writer", name="Writer", model=model)
    team = TeamFactory(slug="crew", name="Crew", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=writer)
    url = reverse("admin:agents_app_team_try", args=[team.pk])
    changelist = admin_client.get(reverse("admin:agents_app_team_changelist")).content.decode()
    assert f'<a href="{url}">Try it</a>' in changelist
    change = admin_client.get(reverse("admin:agents_app_team_change", args=[team.pk])).content.decode()
    assert f'href="{url}" class="viewlink">Try it</a>' in change
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "Send a message to the team <strong>Crew</strong>" in page.content.decode()

    response = admin_client.post(url, {"message": "hello team"})
    assert response.status_code == 200
    html = response.content.decode()
    run = Run.objects.get(parent_run=None)
    child = Run.objects.get(parent_run=run)
    assert run.status == Run.Status.COMPLETED and run.team == team and run.user == staff_user
    assert child.agent == writer and child.status == Run.Status.COMPLETED
    assert _answer(html) == escape(run.output)
    assert run.output.startswith("[offline demo model] My team's answers, combined:\n\n## writer\n")
    members = html[html.index('id="try-children"') :]
    assert "<caption>Members</caption>" in members
    assert f'<a href="{reverse("admin:sessions_app_run_change", args=[child.pk])}">writer</a>' in members
    assert reverse("admin:sessions_app_run_change", args=[run.pk]) in html
    assert f'name="session_id" value="{run.session_id}"' in html
    assert 'id="try-tools"' not in html
    metrics = html[html.index('id="try-metrics"') :]
    assert "Leader's model" in metrics and f'<td class="num">{run.total_tokens}</td>' in metrics

    second = admin_client.post(url, {"message": "and again", "session_id": str(run.session_id)}).content.decode()
    assert Run.objects.filter(session_id=run.session_id, parent_run=None).count() == 2
    earlier = second[second.index("Earlier in this conversation") : second.index('id="try-result"')]
    assert "hello team" in earlier and '<span class="who">Team</span>' in earlier
    assert earlier.count('<span class="who">You</span>') == 1  # the member's run is not a turn of its own


def test_try_it_runs_a_workflow_and_lists_its_steps(admin_client, staff_user):
    model = ModelConfigFactory(name="offline")
    asker = AgentFactory(slug="asker", model=model)
    workflow = WorkflowFactory(slug="flow", name="Flow")
    WorkflowStep.objects.create(workflow=workflow, order=0, name="answer", kind="agent", agent=asker)
    WorkflowStep.objects.create(
        workflow=workflow, order=1, name="remember", kind="function", function="remember_output"
    )
    url = reverse("admin:agents_app_workflow_try", args=[workflow.pk])
    changelist = admin_client.get(reverse("admin:agents_app_workflow_changelist")).content.decode()
    assert f'<a href="{url}">Try it</a>' in changelist

    response = admin_client.post(url, {"message": "hello flow"})
    assert response.status_code == 200
    html = response.content.decode()
    run = Run.objects.get(parent_run=None)
    step_run = Run.objects.get(parent_run=run)
    assert run.workflow == workflow and run.status == Run.Status.COMPLETED and step_run.agent == asker
    assert run.output == '[offline demo model] You said: "hello flow". ' + (
        "I am a built-in offline model for demos and tests; configure a real model in the admin for real answers."
    )
    assert _answer(html) == escape(run.output)
    steps = html[html.index('id="try-children"') :]
    assert "<caption>Steps</caption>" in steps
    assert f'<a href="{reverse("admin:sessions_app_run_change", args=[step_run.pk])}">1 answer</a>' in steps
    assert "<td>2 remember</td>\n          <td>function</td>" in steps
    assert "Send a message to the workflow <strong>Flow</strong> as" in html  # no model of its own
    metrics = html[html.index('id="try-metrics"') :]
    assert '<th scope="col">Duration</th></tr>' in metrics and "Input tokens" not in metrics


def test_try_it_shows_a_failed_workflow_and_refuses_an_inactive_team(admin_client):
    workflow = WorkflowFactory(slug="broken")
    WorkflowStep.objects.create(workflow=workflow, order=0, name="oops", kind="function", function="no_such_function")
    html = admin_client.post(
        reverse("admin:agents_app_workflow_try", args=[workflow.pk]), {"message": "hi"}
    ).content.decode()
    run = Run.objects.get()
    assert run.status == Run.Status.ERROR and run.workflow == workflow
    assert "The run failed" in html and f"<code>{run.error_type}</code>" in html
    assert "No registered step function" in html

    team = TeamFactory(slug="idle", is_active=False)
    url = reverse("admin:agents_app_team_try", args=[team.pk])
    page = admin_client.get(url).content.decode()
    assert "This team is inactive, so it refuses runs." in page and 'id="try_form"' not in page
    assert admin_client.post(url, {"message": "hi"}).status_code == 200
    assert Run.objects.count() == 1
    changelist = admin_client.get(reverse("admin:agents_app_team_changelist")).content.decode()
    assert f'href="{url}"' not in changelist


def test_a_team_gets_hook_rows_inline(admin_client):
    from agents_app.models import AgentHook

    model = ModelConfigFactory(name="offline")
    a = AgentFactory(slug="a", model=model)
    data = team_form(
        model,
        {
            "memberships-0-order": "0",
            "memberships-0-agent": a.pk,
            "hooks-0-phase": "pre",
            "hooks-0-position": "1",
            "hooks-0-hook": "redact_pii",
            "hooks-0-mode": "default",
        },
        slug="guarded",
        name="Guarded",
        mode="route",
        instructions="",
        memberships=1,
        hooks=1,
    )
    page = admin_client.get(reverse("admin:agents_app_team_add")).content.decode()
    assert 'name="hooks-TOTAL_FORMS"' in page and "before the leader they see the message" in page
    r = admin_client.post(reverse("admin:agents_app_team_add"), data)
    assert r.status_code == 302, r.content.decode()[:3000]
    team = Team.objects.get(slug="guarded")
    assert list(AgentHook.objects.values_list("team_id", "agent_id", "phase", "position", "hook")) == [
        (team.pk, None, "pre", 1, "redact_pii")
    ]
    bad = admin_client.post(
        reverse("admin:agents_app_team_change", args=[team.pk]),
        {**data, **inline_management("hooks", 1), "hooks-0-hook": "output_check"},
    )
    assert bad.status_code == 200 and "Not registered as a hook that runs before the model" in bad.content.decode()
