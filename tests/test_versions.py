"""Versioned configurations (agents_app.versions): every saved change to an agent, team or workflow
is an immutable version; runs point at the version they ran with; the admin lists, diffs and
restores versions; staff read them over REST; telemetry carries the number; no secret is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from agents_app.models import AgentHook, ConfigVersion, ModelConfig, TeamMember, WorkflowStep
from agents_app.runs import run_agent, run_team, run_workflow
from agents_app.versions import (
    UnknownVersion,
    get_version,
    record_version,
    restore_version,
    snapshot,
    version_for_run,
)
from sessions_app.models import Run
from telemetry_app.models import TelemetryEvent
from telemetry_app.schemas import RunCreatedEvent, as_version
from telemetry_app.services import telemetry_reset_launch
from tests.factories import (
    AgentFactory,
    ModelConfigFactory,
    TeamFactory,
    TeamMemberFactory,
    WorkflowFactory,
    WorkflowStepFactory,
)
from tests.test_admin import agent_post
from tests.test_admin_teams import inline_management, team_form
from tests.test_hooks import hook_rows_post

SECRET = "sk-live-VERSION-SECRET-777"


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def versions(kind: str, obj: Any) -> list[tuple[int, str]]:
    return list(
        ConfigVersion.objects.filter(kind=kind, **{kind: obj}).order_by("number").values_list("number", "source")
    )


def change_url(obj: Any) -> str:
    return reverse(f"admin:agents_app_{obj._meta.model_name}_change", args=[obj.pk])


# ---- recording from the admin --------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_saves_record_versions_only_when_something_changed(admin_client, staff_user):
    model = ModelConfigFactory(name="offline")
    r = admin_client.post(reverse("admin:agents_app_agent_add"), agent_post(model))
    assert r.status_code == 302, r.content.decode()[:2000]
    agent = ConfigVersion.objects.get().agent
    first = ConfigVersion.objects.get()
    assert (first.number, first.author, first.source) == (1, staff_user, "admin")
    assert first.snapshot["config"]["instructions"] == "Be brief."

    assert admin_client.post(change_url(agent), agent_post(model, instructions="Be very brief.")).status_code == 302
    assert versions("agent", agent) == [(1, "admin"), (2, "admin")]
    # Saving again without a change records nothing.
    assert admin_client.post(change_url(agent), agent_post(model, instructions="Be very brief.")).status_code == 302
    assert versions("agent", agent) == [(1, "admin"), (2, "admin")]
    # Neither does (de)activating: whether it may run is not what a run does.
    assert (
        admin_client.post(change_url(agent), agent_post(model, instructions="Be very brief.", is_active="")).status_code
        == 302
    )
    assert versions("agent", agent) == [(1, "admin"), (2, "admin")]


@pytest.mark.django_db
def test_an_inline_hook_change_records_a_version_and_the_diff_shows_it(admin_client, offline_agent):
    record_version(offline_agent)
    base = agent_post(offline_agent.model, name=offline_agent.name, slug=offline_agent.slug)
    base["tools"] = offline_agent.tools
    hooks = hook_rows_post([{"phase": "post", "position": "0", "hook": "redact_pii"}])
    r = admin_client.post(change_url(offline_agent), {**base, **hooks})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert [n for n, _ in versions("agent", offline_agent)] == [1, 2]
    page = admin_client.get(reverse("admin:agents_app_agent_version", args=[offline_agent.pk, 2])).content.decode()
    assert "What changed since version 1" in page
    assert '<span class="add">+      &quot;hook&quot;: &quot;redact_pii&quot;,</span>' in page
    change = admin_client.get(change_url(offline_agent)).content.decode()
    assert (
        'id="config-versions"' in change
        and reverse("admin:agents_app_agent_version", args=[offline_agent.pk, 2]) in change
    )


@pytest.mark.django_db
def test_a_team_member_change_in_the_admin_records_a_team_version(admin_client):
    model = ModelConfigFactory(name="offline")
    a, b = AgentFactory(slug="a", model=model), AgentFactory(slug="b", model=model)
    data = team_form(model, {"memberships-0-order": "0", "memberships-0-agent": a.pk}, memberships=1)
    assert admin_client.post(reverse("admin:agents_app_team_add"), data).status_code == 302
    team = TeamMember.objects.get().team
    member = TeamMember.objects.get()
    added = {
        **data,
        **inline_management("memberships", 2, initial=1),
        "memberships-0-id": member.pk,
        "memberships-0-team": team.pk,
        "memberships-1-order": "1",
        "memberships-1-agent": b.pk,
        "memberships-1-role": "checker",
    }
    r = admin_client.post(change_url(team), added)
    assert r.status_code == 302, r.content.decode()[:3000]
    assert [n for n, _ in versions("team", team)] == [1, 2]
    latest = get_version("team", team.pk, 2).snapshot["config"]["members"]
    assert [(m["agent"]["slug"], m["role"]) for m in latest] == [("a", ""), ("b", "checker")]


@pytest.mark.django_db
def test_a_workflow_step_change_records_a_version_and_unchanged_records_none():
    model = ModelConfigFactory(name="offline")
    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="ask", kind="agent", agent=AgentFactory(slug="a", model=model), order=0)
    assert record_version(flow).number == 1
    assert record_version(flow) is None
    WorkflowStep.objects.create(workflow=flow, name="count", kind="function", function="text_stats", order=1)
    second = record_version(flow)
    assert second is not None and second.number == 2
    assert [s["name"] for s in second.snapshot["config"]["steps"]] == ["ask", "count"]


@pytest.mark.django_db
def test_a_model_config_change_in_the_admin_versions_its_agents(admin_client):
    from tests.test_admin import model_config_post

    model = ModelConfigFactory(name="offline")
    agent = AgentFactory(slug="a", model=model)
    record_version(agent)
    r = admin_client.post(
        reverse("admin:agents_app_modelconfig_change", args=[model.pk]), model_config_post(model, model_id="other")
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    assert [n for n, _ in versions("agent", agent)] == [1, 2]
    assert get_version("agent", agent.pk, 2).snapshot["config"]["model"]["model_id"] == "other"


# ---- restore ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_restore_asks_first_then_writes_the_version_back_as_a_new_version(admin_client, offline_agent, staff_user):
    AgentHook.objects.create(agent=offline_agent, phase="post", position=5, hook="redact_pii")
    record_version(offline_agent)
    offline_agent.instructions = "Something else entirely."
    offline_agent.save()
    AgentHook.objects.filter(agent=offline_agent).delete()
    record_version(offline_agent)

    url = reverse("admin:agents_app_agent_version_restore", args=[offline_agent.pk, 1])
    page = admin_client.get(url).content.decode()
    assert "Yes, restore version 1" in page and "csrfmiddlewaretoken" in page
    assert [n for n, _ in versions("agent", offline_agent)] == [1, 2]  # a GET changes nothing

    # CSRF is enforced on the POST.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(url).status_code == 403

    r = admin_client.post(url)
    assert r.status_code == 302
    offline_agent.refresh_from_db()
    assert offline_agent.instructions != "Something else entirely."
    assert list(AgentHook.objects.filter(agent=offline_agent).values_list("hook", flat=True)) == ["redact_pii"]
    latest = ConfigVersion.objects.filter(agent=offline_agent).order_by("-number").first()
    assert (latest.number, latest.source, latest.restored_from, latest.author) == (3, "restore", 1, staff_user)
    assert latest.snapshot_hash == get_version("agent", offline_agent.pk, 1).snapshot_hash


@pytest.mark.django_db
def test_restore_needs_the_change_permission(client, offline_agent):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agent"))
    record_version(offline_agent)
    client.force_login(viewer)
    assert client.get(reverse("admin:agents_app_agent_version", args=[offline_agent.pk, 1])).status_code == 200
    assert client.get(reverse("admin:agents_app_agent_version", args=[offline_agent.pk, 9])).status_code == 404
    url = reverse("admin:agents_app_agent_version_restore", args=[offline_agent.pk, 1])
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403


@pytest.mark.django_db
def test_a_team_and_a_workflow_restore_their_members_and_steps():
    model = ModelConfigFactory(name="offline")
    a, b = AgentFactory(slug="a", model=model), AgentFactory(slug="b", model=model)
    team = TeamFactory(slug="crew", model=model)
    TeamMemberFactory(team=team, agent=a, order=0)
    record_version(team)
    TeamMember.objects.filter(team=team).delete()
    TeamMemberFactory(team=team, agent=b, order=0)
    record_version(team)
    restored = restore_version(get_version("team", team.pk, 1))
    assert restored.number == 3
    assert [m.agent.slug for m in team.memberships.all()] == ["a"]

    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="ask", kind="agent", agent=a, order=0)
    record_version(flow)
    WorkflowStep.objects.filter(workflow=flow).update(agent=b)
    record_version(flow)
    restore_version(get_version("workflow", flow.pk, 1))
    assert list(WorkflowStep.objects.filter(workflow=flow).values_list("name", "agent__slug")) == [("ask", "a")]


# ---- runs record their version --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_records_its_version_and_keeps_it_after_an_edit(offline_agent, user, admin_client):
    first = run_agent(agent_id=offline_agent.slug, user=user, message="hello")
    run = Run.objects.select_related("config_version").get(pk=first.run_id)
    # The agent was made in code (a factory): its first run recorded version 1.
    assert (run.config_version.number, run.config_version.source, run.config_version.author) == (1, "run", None)
    base = agent_post(offline_agent.model, name=offline_agent.name, slug=offline_agent.slug, instructions="New.")
    base["tools"] = offline_agent.tools
    assert admin_client.post(change_url(offline_agent), base).status_code == 302
    second = run_agent(agent_id=offline_agent.slug, user=user, message="again")
    run.refresh_from_db()
    assert run.config_version.number == 1
    assert run.config_version.snapshot["config"]["instructions"] != "New."
    assert Run.objects.get(pk=second.run_id).config_version.number == 2


@pytest.mark.django_db
def test_a_change_made_in_a_shell_gets_a_version_at_the_next_run(offline_agent, user):
    run_agent(agent_id=offline_agent.slug, user=user, message="one")
    offline_agent.instructions = "Changed in a shell."
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="two")
    version = Run.objects.get(pk=result.run_id).config_version
    assert (version.number, version.source) == (2, "run")
    assert version.snapshot["config"]["instructions"] == "Changed in a shell."


@pytest.mark.django_db
def test_team_member_runs_and_workflow_step_runs_record_their_own_versions(user):
    model = ModelConfigFactory(name="offline")
    a, b = AgentFactory(slug="a", model=model), AgentFactory(slug="b", model=model)
    record_version(a)
    a.instructions = "v2 of a"
    a.save()
    record_version(a)
    team = TeamFactory(slug="crew", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=a, order=0)
    TeamMemberFactory(team=team, agent=b, order=1)
    result = run_team(team_id="crew", user=user, message="what is 6*7?")
    assert result["status"] == "completed" and result["config_version"] == 1
    parent = Run.objects.get(pk=result["run_id"])
    assert (parent.config_version.kind, parent.config_version.team_id, parent.config_version.number) == (
        "team",
        team.pk,
        1,
    )
    children = {r.agent.slug: r.config_version for r in Run.objects.filter(parent_run=parent)}
    assert (children["a"].kind, children["a"].number) == ("agent", 2)
    assert (children["b"].kind, children["b"].number) == ("agent", 1)

    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="ask", kind="agent", agent=a, order=0)
    WorkflowStepFactory(workflow=flow, name="team", kind="team", team=team, order=1)
    out = run_workflow(workflow_id="flow", user=user, message="hello")
    assert out["status"] == "completed" and out["config_version"] == 1
    wrun = Run.objects.get(pk=out["run_id"])
    assert (wrun.config_version.kind, wrun.config_version.number) == ("workflow", 1)
    steps = {(r.agent or r.team).slug: r.config_version for r in Run.objects.filter(parent_run=wrun)}
    assert (steps["a"].number, steps["crew"].kind, steps["crew"].number) == (2, "team", 1)


@pytest.mark.django_db
def test_the_version_costs_no_query_per_run_in_the_steady_state(offline_agent, user):
    first = run_agent(agent_id=offline_agent.slug, user=user, message="start")
    counts = []
    for i in range(5):
        with CaptureQueriesContext(connection) as ctx:
            run_agent(agent_id=offline_agent.slug, user=user, message=f"m{i}", session_id=first.session_id)
        counts.append(len(ctx.captured_queries))
        assert not [q for q in ctx.captured_queries if "configversion" in q["sql"].lower()], ctx.captured_queries
    assert len(set(counts)) == 1, counts
    assert ConfigVersion.objects.count() == 1


# ---- REST ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_shows_a_runs_version_and_staff_read_versions(offline_agent, user, token, staff_token):
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hello")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get(f"/api/runs/{result.run_id}/").json()["config_version"] == 1
    # Versions are for staff.
    assert api.get(f"/api/agents/{offline_agent.slug}/versions/").status_code == 403

    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    listed = staff.get(f"/api/agents/{offline_agent.slug}/versions/").json()
    assert [(v["number"], v["kind"], v["runnable_id"], v["source"], v["author"]) for v in listed] == [
        (1, "agent", "offline", "run", None)
    ]
    assert "snapshot" not in listed[0]
    one = staff.get(f"/api/agents/{offline_agent.slug}/versions/1").json()
    assert one["snapshot"]["config"]["tools"] == offline_agent.tools
    missing = staff.get(f"/api/agents/{offline_agent.slug}/versions/7")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_version")
    assert missing.json()["detail"] == "No version 7 of agent 'offline'."  # its id, not the database's key
    nobody = staff.get("/api/agents/nobody/versions/")
    assert (nobody.status_code, nobody.json()["code"]) == (404, "unknown_agent")
    team = staff.get("/api/teams/nobody/versions/1")
    assert (team.status_code, team.json()["code"]) == (404, "unknown_team")
    with pytest.raises(UnknownVersion):
        get_version("agent", offline_agent.pk, 7)


@pytest.mark.django_db
def test_staff_api_saves_record_versions(staff_token, offline_agent):
    staff = APIClient()
    staff.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    r = staff.patch(f"/api/agents/{offline_agent.slug}/", {"instructions": "From the API."}, format="json")
    assert r.status_code == 200, r.content
    assert versions("agent", offline_agent) == [(1, "api")]
    r = staff.patch(f"/api/agents/{offline_agent.slug}/", {"instructions": "From the API."}, format="json")
    assert versions("agent", offline_agent) == [(1, "api")]
    staff.patch(f"/api/agents/{offline_agent.slug}/", {"instructions": "Twice."}, format="json")
    assert versions("agent", offline_agent) == [(1, "api"), (2, "api")]


# ---- secrets ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_secret_in_a_snapshot_only_a_marker_that_changes_with_the_key(admin_client):
    model = ModelConfigFactory(name="keyed", provider=ModelConfig.Provider.OPENAI, model_id="m", api_key=SECRET)
    agent = AgentFactory(slug="keyed", model=model)
    first = record_version(agent)
    text = json.dumps(first.snapshot)
    assert SECRET not in text and "VERSION-SECRET" not in text
    marker = first.snapshot["config"]["model"]["api_key"]
    assert marker.startswith("set:") and len(marker) == 16
    model.api_key = SECRET + "-rotated"
    model.save()
    second = record_version(agent)
    assert second is not None and second.snapshot["config"]["model"]["api_key"] not in ("", marker)
    pages = [
        reverse("admin:agents_app_agent_version", args=[agent.pk, 2]),
        reverse("admin:agents_app_agent_versions", args=[agent.pk]),
        reverse("admin:agents_app_agent_version_restore", args=[agent.pk, 1]),
    ]
    for url in pages:
        page = admin_client.get(url)
        assert page.status_code == 200 and SECRET not in page.content.decode(), url
    assert SECRET not in json.dumps(snapshot("agent", agent))


@pytest.mark.django_db
def test_a_password_in_the_base_url_is_a_marker_too_and_a_pinned_run_uses_the_current_one():
    """Some endpoints take their credentials in the URL (https://user:password@host/v1). A version
    is kept forever, after the password is rotated: it must hold a marker, as for the API key, and
    running the version uses the row's current password."""
    from agents_app.versions import materialize

    url = "http://bob:hunter2-VERSION@127.0.0.1:9/v1"
    model = ModelConfigFactory(name="in-url", provider=ModelConfig.Provider.OPENAI, model_id="m", base_url=url)
    agent = AgentFactory(slug="in-url", model=model)
    first = record_version(agent)
    text = json.dumps(first.snapshot)
    assert "hunter2" not in text
    marked = first.snapshot["config"]["model"]["base_url"]
    assert marked.startswith("http://bob:set:") and marked.endswith("@127.0.0.1:9/v1")
    model.base_url = "http://bob:rotated-VERSION@127.0.0.1:9/v1"
    model.save()
    second = record_version(agent)
    assert second is not None and "rotated" not in json.dumps(second.snapshot)
    assert second.snapshot["config"]["model"]["base_url"] != marked
    assert materialize(first).model.base_url == "http://bob:rotated-VERSION@127.0.0.1:9/v1"


# ---- telemetry -----------------------------------------------------------------------------------------


@pytest.fixture
def telemetry_on(settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)
    yield
    telemetry_reset_launch(pending=False)


@pytest.mark.django_db(transaction=True)
def test_telemetry_run_events_carry_the_version_number(user, telemetry_on):
    agent = AgentFactory(slug="t")
    record_version(agent)
    agent.instructions = "two"
    agent.save()
    result = run_agent(agent_id="t", user=user, message="hello")
    payload = TelemetryEvent.objects.get(event_type="agent").payload
    assert payload["run_id"] == result.run_id
    assert (payload["schema_version"], payload["config_version"]) == (3, 2)
    RunCreatedEvent.model_validate(payload)
    # An older collector gets the event without the field it does not know.
    older = as_version(payload, 2)
    assert older["schema_version"] == 2 and "config_version" not in older
    RunCreatedEvent.model_validate(older)
    assert "config_version" not in as_version(payload, 1) and "cost" not in as_version(payload, 1)
    with pytest.raises(ValueError, match="config_version"):
        RunCreatedEvent.model_validate({**payload, "schema_version": 2})


@pytest.mark.django_db
def test_version_for_run_reuses_a_known_version_without_a_query(offline_agent):
    from agents_app.selectors import agent_get_active

    agent = agent_get_active(agent_id=offline_agent.slug)
    pk, number = version_for_run("agent", agent)
    with CaptureQueriesContext(connection) as ctx:
        assert version_for_run("agent", agent) == (pk, number)
    assert ctx.captured_queries == []


# ---- running a pinned version (what evals pinned to a version use) -------------------------------------


@pytest.mark.django_db
def test_a_run_pinned_to_a_version_runs_that_configuration(user, scripted_model, openai_model):
    from agents_app.runs import run_events

    agent = AgentFactory(slug="pin", model=openai_model, instructions="Old instructions.", tools=[])
    AgentHook.objects.create(agent=agent, phase="post", position=0, hook="redact_pii")
    record_version(agent)
    agent.instructions = "New instructions."
    agent.save()
    AgentHook.objects.filter(agent=agent).delete()
    record_version(agent)

    scripted_model.push_text("old answer")
    handle, events = run_events("agent", "pin", user=user, message="hi", version=1)
    assert handle.result(events)["status"] == "completed"
    assert scripted_model.requests[-1]["messages"][0]["content"] == "Old instructions."
    assert [h.hook for h in handle.agent.post_hook_rows()] == ["redact_pii"]
    run = Run.objects.get(pk=handle.run_id)
    assert run.config_version.number == 1
    # Nothing was written back: the agent is as it is now, and no version was recorded.
    agent.refresh_from_db()
    assert agent.instructions == "New instructions." and not AgentHook.objects.filter(agent=agent).exists()
    assert ConfigVersion.objects.filter(agent=agent).count() == 2

    scripted_model.push_text("new answer")
    handle, _ = run_events("agent", "pin", user=user, message="hi")
    assert scripted_model.requests[-1]["messages"][0]["content"] == "New instructions."
    assert Run.objects.get(pk=handle.run_id).config_version.number == 2

    with pytest.raises(UnknownVersion):
        run_events("agent", "pin", user=user, message="hi", version=9)


@pytest.mark.django_db
def test_a_team_and_a_workflow_run_pinned_to_a_version(user):
    from agents_app.runs import arun, async_to_sync

    model = ModelConfigFactory(name="offline")
    a, b = AgentFactory(slug="a", model=model), AgentFactory(slug="b", model=model)
    team = TeamFactory(slug="crew", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=a, order=0)
    record_version(team)
    TeamMemberFactory(team=team, agent=b, order=1)
    record_version(team)
    result = async_to_sync(arun)("team", "crew", user=user, message="hello", version=1)
    assert result["status"] == "completed" and result["config_version"] == 1
    assert [m["member_id"] for m in result["member_runs"]] == ["a"]

    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="first", kind="agent", agent=a, order=0)
    record_version(flow)
    WorkflowStepFactory(workflow=flow, name="second", kind="agent", agent=b, order=1)
    record_version(flow)
    out = async_to_sync(arun)("workflow", "flow", user=user, message="hello", version=1)
    assert out["status"] == "completed" and out["config_version"] == 1
    assert [s["step_name"] for s in out["step_results"]] == ["first"]


@pytest.mark.django_db
def test_every_versions_page_renders_and_the_run_page_links_its_version(admin_client, user):
    model = ModelConfigFactory(name="offline")
    a = AgentFactory(slug="a", model=model)
    team = TeamFactory(slug="crew", model=model)
    TeamMemberFactory(team=team, agent=a)
    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="ask", kind="agent", agent=a, order=0)
    for obj in (a, team, flow):
        record_version(obj)
        name = obj._meta.model_name
        for url in (
            reverse(f"admin:agents_app_{name}_versions", args=[obj.pk]),
            reverse(f"admin:agents_app_{name}_version", args=[obj.pk, 1]),
            reverse(f"admin:agents_app_{name}_version_restore", args=[obj.pk, 1]),
            change_url(obj),
        ):
            assert admin_client.get(url).status_code == 200, url
    result = run_agent(agent_id="a", user=user, message="hi")
    page = admin_client.get(reverse("admin:sessions_app_run_change", args=[result.run_id])).content.decode()
    assert f'<a href="{reverse("admin:agents_app_agent_version", args=[a.pk, 1])}">version 1</a>' in page


@pytest.mark.django_db
def test_a_version_that_is_no_longer_valid_is_not_restored_and_nothing_changes(admin_client):
    from agents_app.versions import VersionNotRestorable

    flow = WorkflowFactory(slug="flow")
    WorkflowStep.objects.create(workflow=flow, name="count", kind="function", function="text_stats", order=0)
    first = record_version(flow)
    WorkflowStep.objects.filter(workflow=flow).update(name="renamed")
    record_version(flow)
    # As if the step function had been unregistered since version 1.
    config = first.snapshot
    config["config"]["steps"][0]["function"] = "gone_function"
    ConfigVersion.objects.filter(pk=first.pk).update(snapshot=config)
    first.refresh_from_db()
    with pytest.raises(VersionNotRestorable, match="gone_function"):
        restore_version(first)
    assert list(WorkflowStep.objects.filter(workflow=flow).values_list("name", flat=True)) == ["renamed"]
    assert ConfigVersion.objects.filter(workflow=flow).count() == 2
    r = admin_client.post(reverse("admin:agents_app_workflow_version_restore", args=[flow.pk, 1]), follow=True)
    assert "Version 1 cannot be restored" in r.content.decode()
