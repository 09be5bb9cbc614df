"""Access per agent, team and workflow (issue 18, part 1): every signed-in user, or only the users
and groups a runnable names (and staff). Anyone else meets a 404 wherever they look: lists, details,
runs, sessions, run events, the websocket, the chat page and agno's routes."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.runs import run_agent
from sessions_app.models import Run
from tests.conftest import bearer
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory
from tests.test_websocket import ORIGIN, _application, connect

pytestmark = pytest.mark.django_db(transaction=True)


def _restrict(component: Any, *, users: list[Any] = (), groups: list[Any] = ()) -> None:
    component.access = "restricted"
    component.save()
    component.allowed_users.set(users)
    component.allowed_groups.set(groups)


async def test_a_restricted_agent_does_not_exist_for_others(asgi, offline_agent, user, token, other_user, other_token):
    await sync_to_async(AgentFactory)(slug="public", model=offline_agent.model)
    earlier = await sync_to_async(run_agent)(agent_id=offline_agent.slug, user=other_user, message="before")
    await sync_to_async(_restrict)(offline_agent, users=[user])
    slug = offline_agent.slug
    # The granted user: everything works.
    assert [a["agent_id"] for a in (await asgi.get("/api/agents/", headers=bearer(token))).json()] == [slug, "public"]
    r = await asgi.post(f"/api/agents/{slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200
    # Anyone else: a 404 wherever they look, as for an agent that does not exist.
    other = bearer(other_token)
    assert [a["agent_id"] for a in (await asgi.get("/api/agents/", headers=other)).json()] == ["public"]
    assert (await asgi.get(f"/api/agents/{slug}/", headers=other)).status_code == 404
    r = await asgi.post(f"/api/agents/{slug}/runs", json={"message": "hi"}, headers=other)
    assert r.status_code == 404 and r.json()["code"] == "unknown_agent"
    # Their own earlier session and run with it are out of reach too.
    sessions = (await asgi.get("/api/sessions/", headers=other)).json()
    assert sessions == [] or sessions.get("results") == [], sessions
    assert (await asgi.get(f"/api/runs/{earlier.run_id}/events", headers=other)).status_code == 404
    # agno's routes.
    assert slug not in [a["id"] for a in (await asgi.get("/os/agents", headers=other)).json()]
    r = await asgi.post(f"/os/agents/{slug}/runs", data={"message": "hi", "stream": "false"}, headers=other)
    assert r.status_code == 404
    # The websocket is refused as for an unknown agent.
    comm = WebsocketCommunicator(
        _application(), f"/ws/agents/{slug}/", headers=[ORIGIN], subprotocols=["agentos", f"token.{other_token}"]
    )
    connected, code = await comm.connect(timeout=5)
    assert not connected and code == 4404
    ws = await connect(slug, token=token)  # the granted user's socket opens
    await ws.disconnect()
    assert await Run.objects.filter(agent=offline_agent, user=other_user).acount() == 1  # only the earlier one


async def test_groups_grant_access_and_staff_always_may(asgi, offline_agent, user, token, staff_token):
    group = await sync_to_async(Group.objects.create)(name="researchers")
    await sync_to_async(_restrict)(offline_agent, groups=[group])
    r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 404
    await sync_to_async(user.groups.add)(group)
    r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200
    r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(staff_token))
    assert r.status_code == 200


async def test_teams_and_workflows_may_be_restricted_too(asgi, offline_agent, token):
    def make() -> None:
        team = TeamFactory(slug="crew", model=offline_agent.model, mode="route")
        TeamMemberFactory(team=team, agent=offline_agent)
        flow = WorkflowFactory(slug="flow")
        _restrict(team)
        _restrict(flow)

    await sync_to_async(make)()
    headers = bearer(token)
    assert (await asgi.post("/api/teams/crew/runs", json={"message": "hi"}, headers=headers)).status_code == 404
    assert (await asgi.post("/api/workflows/flow/runs", json={"message": "hi"}, headers=headers)).status_code == 404
    assert (await asgi.get("/api/teams/", headers=headers)).json() == []
    assert (await asgi.get("/os/teams", headers=headers)).json() == []
    assert (await asgi.get("/os/workflows", headers=headers)).json() == []


def test_the_chat_page_lists_only_what_the_user_may_use(client, user, offline_agent):
    AgentFactory(slug="public", name="Public helper", model=offline_agent.model)
    offline_agent.name = "Secret helper"
    offline_agent.save()
    _restrict(offline_agent)
    client.force_login(user)
    page = client.get("/chat/").content.decode()
    assert "Public helper" in page and "Secret helper" not in page


def test_staff_set_access_over_the_api(staff_token, offline_agent, user):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    group = Group.objects.create(name="g")
    r = api.patch(
        f"/api/agents/{offline_agent.slug}/",
        {"access": "restricted", "allowed_users": [user.pk], "allowed_groups": [group.pk]},
        format="json",
    )
    assert r.status_code == 200, r.json()
    assert (r.json()["access"], r.json()["allowed_users"], r.json()["allowed_groups"]) == (
        "restricted",
        [user.pk],
        [group.pk],
    )
    assert api.patch(f"/api/agents/{offline_agent.slug}/", {"access": "some"}, format="json").status_code == 400


def test_the_cost_of_access_checks_per_request(client, offline_agent, user, token):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def run_queries() -> int:
        api.post(f"/api/agents/{offline_agent.slug}/runs", {"message": "hi"}, format="json")  # warm the caches
        with CaptureQueriesContext(connection) as ctx:
            assert (
                api.post(f"/api/agents/{offline_agent.slug}/runs", {"message": "hi"}, format="json").status_code == 200
            )
        return len(ctx.captured_queries)

    nothing_restricted = run_queries()
    group = Group.objects.create(name="g")
    user.groups.add(group)
    other = AgentFactory(slug="other", model=offline_agent.model)
    _restrict(other, groups=[group])
    # Something is restricted: the user's groups are read once per request (the list of restricted
    # runnables is cached per process).
    assert run_queries() == nothing_restricted + 1


async def test_images_tokens_and_open_sockets_follow_access(asgi, offline_agent, user, token, staff_token):
    import base64

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs",
        json={"message": "look", "images": [{"data": png}]},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    assert (await asgi.get(f"/api/runs/{run_id}/images/0", headers=bearer(token))).status_code == 200
    ws = await connect(offline_agent.slug, token=token)
    try:
        await sync_to_async(_restrict)(offline_agent)
        # Gone for the user: the image, a token naming the agent, and a run on the socket opened before.
        assert (await asgi.get(f"/api/runs/{run_id}/images/0", headers=bearer(token))).status_code == 404
        r = await asgi.post("/api/tokens/", json={"name": "t", "agents": [offline_agent.slug]}, headers=bearer(token))
        assert r.status_code == 400 and "No agent" in r.text
        await ws.send_json_to({"type": "run", "message": "still?"})
        frame = await ws.receive_json_from(timeout=5)
        assert frame["event"] == "Error" and frame["code"] == "unknown_agent"
    finally:
        await ws.disconnect()
