"""Scoped API tokens (sessions_app.tokens, /api/tokens/, the admin) through the real ASGI stack:
created, shown once, stored as a digest, listed, revoked; limited to some runnables (404 for the
others on REST, /os and the websocket) and to reads (403 token_read_only); expired and revoked
tokens are 401s with their code; last use recorded at most once a minute; DRF tokens still work."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents_app.runs import run_agent
from sessions_app.models import ApiToken, Run
from sessions_app.tokens import token_create
from tests.conftest import bearer
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")
OS = "/os"


@pytest.fixture
def two_agents(db: Any) -> tuple[Any, Any]:
    """Two offline agents (no model server): the one tokens are limited to, and another."""
    return AgentFactory(slug="mine", name="Mine"), AgentFactory(slug="theirs", name="Theirs")


def new_token(user: Any, **kwargs: Any) -> tuple[ApiToken, str]:
    kwargs.setdefault("name", "test")
    kwargs.setdefault("expires_at", timezone.now() + timedelta(days=1))
    return token_create(user=user, **kwargs)


async def anew_token(user: Any, **kwargs: Any) -> tuple[ApiToken, str]:
    return await sync_to_async(new_token)(user, **kwargs)


def ws(path: str, key: str) -> WebsocketCommunicator:
    from agentos_site.asgi import application

    return WebsocketCommunicator(application, path, headers=[ORIGIN], subprotocols=["agentos", f"token.{key}"])


# ---- create, list, show once, revoke ---------------------------------------------------------------


async def test_create_list_and_revoke_over_the_api_the_token_shown_once_and_stored_as_a_digest(
    asgi, user, token, two_agents
):
    r = await asgi.post(
        "/api/tokens/",
        json={"name": "support widget", "agents": ["mine"], "read_only": False, "expires_at": "2999-01-01T00:00:00Z"},
        headers=bearer(token),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["token"]
    assert secret.startswith("agos_") and len(secret) == 60
    assert created["prefix"] == secret[:17]
    assert {k: v for k, v in created.items() if k not in ("id", "token", "prefix", "created_at")} == {
        "name": "support widget",
        "read_only": False,
        "agents": ["mine"],
        "teams": [],
        "workflows": [],
        "expires_at": "2999-01-01T00:00:00Z",
        "last_used_at": None,
    }
    # The database holds its SHA-256 digest and its prefix, never the token.
    row = await ApiToken.objects.aget(pk=created["id"])
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    stored = await ApiToken.objects.filter(pk=created["id"]).values().afirst()
    assert not [name for name, value in stored.items() if secret in str(value)]

    listed = (await asgi.get("/api/tokens/", headers=bearer(token))).json()
    assert listed["count"] == 1
    assert listed["results"][0].keys() == created.keys() - {"token"}
    assert listed["results"][0]["prefix"] == secret[:17]
    one = await asgi.get(f"/api/tokens/{created['id']}/", headers=bearer(token))
    assert one.status_code == 200 and "token" not in one.json()

    # It works, then it is revoked and stops working (the row stays, for the record).
    assert (await asgi.get("/api/agents/", headers=bearer(secret))).status_code == 200
    r = await asgi.delete(f"/api/tokens/{created['id']}/", headers=bearer(token))
    assert r.status_code == 204
    r = await asgi.get("/api/agents/", headers=bearer(secret))
    assert r.status_code == 401
    assert r.json() == {"detail": "This API token has been revoked.", "code": "token_revoked"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert (await asgi.get("/api/tokens/", headers=bearer(token))).json()["count"] == 0
    assert (await ApiToken.objects.aget(pk=created["id"])).revoked_at is not None


async def test_another_users_tokens_are_not_found(asgi, user, other_token):
    mine, _ = await anew_token(user)
    assert (await asgi.get(f"/api/tokens/{mine.pk}/", headers=bearer(other_token))).status_code == 404
    assert (await asgi.delete(f"/api/tokens/{mine.pk}/", headers=bearer(other_token))).status_code == 404
    assert (await asgi.get("/api/tokens/", headers=bearer(other_token))).json()["count"] == 0
    assert (await ApiToken.objects.aget(pk=mine.pk)).revoked_at is None


async def test_creation_is_validated(asgi, user, token, two_agents, settings):
    async def create(**body: Any) -> Any:
        return await asgi.post("/api/tokens/", json={"name": "t", **body}, headers=bearer(token))

    r = await create(agents=["mine", "nope"], teams=["no-team"])
    assert r.status_code == 400
    assert r.json()["agents"] == ["No agent with id 'nope'."] and r.json()["teams"] == ["No team with id 'no-team'."]
    r = await create(expires_at="2001-01-01T00:00:00Z")
    assert r.status_code == 400 and r.json()["expires_at"] == ["Must be in the future."]
    r = await create(name="")
    assert r.status_code == 400 and r.json()["code"] == "invalid"
    # No expiry given: the site's default lifetime (90 days); null: never.
    r = await create()
    expires = timezone.datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(days=89, hours=23) < expires - timezone.now() <= timedelta(days=90)
    assert (await create(expires_at=None)).json()["expires_at"] is None
    # With a longest lifetime, "never" and later dates are refused.
    settings.AGENTOS = {**settings.AGENTOS, "API_TOKEN_MAX_DAYS": 30}
    assert (await create(expires_at=None)).status_code == 400
    assert (await create(expires_at=(timezone.now() + timedelta(days=31)).isoformat())).status_code == 400
    assert (await create(expires_at=(timezone.now() + timedelta(days=29)).isoformat())).status_code == 201


async def test_a_user_holds_a_bounded_number_of_live_tokens(asgi, user, token, settings):
    settings.AGENTOS = {**settings.AGENTOS, "API_TOKENS_PER_USER": 2}
    for _ in range(2):
        assert (await asgi.post("/api/tokens/", json={"name": "t"}, headers=bearer(token))).status_code == 201
    r = await asgi.post("/api/tokens/", json={"name": "t"}, headers=bearer(token))
    assert r.status_code == 409 and r.json()["code"] == "token_limit_reached"
    # Expired and revoked tokens do not count.
    await ApiToken.objects.filter(user=user).aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    assert (await asgi.post("/api/tokens/", json={"name": "t"}, headers=bearer(token))).status_code == 201


async def test_a_scoped_token_manages_no_token_but_may_revoke_itself(asgi, user, token):
    first, first_secret = await anew_token(user, name="first")
    second, _ = await anew_token(user, name="second")
    r = await asgi.post("/api/tokens/", json={"name": "wider"}, headers=bearer(first_secret))
    assert r.status_code == 403 and r.json()["code"] == "token_cannot_manage_tokens"
    r = await asgi.delete(f"/api/tokens/{second.pk}/", headers=bearer(first_secret))
    assert r.status_code == 403 and r.json()["code"] == "token_cannot_manage_tokens"
    assert (await asgi.get("/api/tokens/", headers=bearer(first_secret))).json()["count"] == 2
    assert (await asgi.delete(f"/api/tokens/{first.pk}/", headers=bearer(first_secret))).status_code == 204
    assert (await asgi.get("/api/tokens/", headers=bearer(first_secret))).status_code == 401
    assert (await ApiToken.objects.aget(pk=second.pk)).revoked_at is None


# ---- authenticating ---------------------------------------------------------------------------------


async def test_both_headers_take_new_tokens_and_drf_tokens_still_work(asgi, user, token, two_agents):
    _, secret = await anew_token(user)
    for header in (f"Bearer {secret}", f"Token {secret}", f"Bearer {token}", f"Token {token}"):
        r = await asgi.get("/api/agents/", headers={"Authorization": header})
        assert r.status_code == 200 and [a["agent_id"] for a in r.json()] == ["mine", "theirs"], header


async def test_expired_revoked_unknown_and_inactive_are_401_with_a_code(asgi, user, two_agents):
    _, expired = await anew_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    revoked_row, revoked = await anew_token(user)
    revoked_row.revoked_at = timezone.now()
    await revoked_row.asave()
    _, live = await anew_token(user)
    cases = {
        expired: ("token_expired", "This API token has expired."),
        revoked: ("token_revoked", "This API token has been revoked."),
        live[:-1] + ("A" if live[-1] != "A" else "B"): ("authentication_failed", "Invalid token."),
        "agos_short": ("authentication_failed", "Invalid token."),
    }
    for key, (code, detail) in cases.items():
        for url in ("/api/agents/", f"{OS}/agents"):
            r = await asgi.get(url, headers=bearer(key))
            assert r.status_code == 401, (key, url)
            assert r.json() == {"detail": detail, "code": code}, (key, url)
    user.is_active = False
    await user.asave()
    r = await asgi.get("/api/agents/", headers=bearer(live))
    assert r.status_code == 401 and r.json()["code"] == "authentication_failed"


async def test_last_use_is_recorded_at_most_once_a_minute(asgi, user, two_agents, settings):
    # As seen across processes (the last use written by another one): without the per-process cache,
    # whose own copy of the row would decide here (tests/test_auth_cache.py).
    settings.AGENTOS = {**settings.AGENTOS, "AUTH_CACHE_SECONDS": 0}
    row, secret = await anew_token(user)
    assert row.last_used_at is None
    assert (await asgi.get("/api/agents/", headers=bearer(secret))).status_code == 200
    first = (await ApiToken.objects.aget(pk=row.pk)).last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=10)
    # Used again within the minute: not written again.
    thirty_seconds_ago = timezone.now() - timedelta(seconds=30)
    await ApiToken.objects.filter(pk=row.pk).aupdate(last_used_at=thirty_seconds_ago)
    for _ in range(3):
        assert (await asgi.get("/api/agents/", headers=bearer(secret))).status_code == 200
    assert (await ApiToken.objects.aget(pk=row.pk)).last_used_at == thirty_seconds_ago
    # A minute later it is.
    a_minute_ago = timezone.now() - timedelta(seconds=61)
    await ApiToken.objects.filter(pk=row.pk).aupdate(last_used_at=a_minute_ago)
    assert (await asgi.get("/api/agents/", headers=bearer(secret))).status_code == 200
    assert (await ApiToken.objects.aget(pk=row.pk)).last_used_at > a_minute_ago + timedelta(seconds=60)


# ---- limited to some runnables --------------------------------------------------------------------------


async def test_a_scoped_token_sees_and_runs_only_its_runnables_over_rest(asgi, user, two_agents):
    team = await sync_to_async(TeamFactory)(slug="crew", mode="collaborate")
    await sync_to_async(TeamMemberFactory)(team=team, agent=two_agents[0])
    await sync_to_async(WorkflowFactory)(slug="flow")
    theirs = await sync_to_async(run_agent)(agent_id="theirs", user=user, message="hello")
    mine = await sync_to_async(run_agent)(agent_id="mine", user=user, message="hello")
    _, secret = await anew_token(user, agents=["mine"])
    auth = bearer(secret)

    assert [a["agent_id"] for a in (await asgi.get("/api/agents/", headers=auth)).json()] == ["mine"]
    assert (await asgi.get("/api/agents/mine/", headers=auth)).status_code == 200
    r = await asgi.get("/api/agents/theirs/", headers=auth)
    assert r.status_code == 404
    assert (await asgi.get("/api/teams/", headers=auth)).json() == []
    assert (await asgi.get("/api/workflows/", headers=auth)).json() == []
    assert (await asgi.get("/api/teams/crew/", headers=auth)).status_code == 404

    r = await asgi.post("/api/agents/theirs/runs", json={"message": "hi"}, headers=auth)
    assert r.status_code == 404
    assert r.json() == {"detail": "No active agent with id 'theirs'.", "code": "unknown_agent"}
    r = await asgi.post("/api/teams/crew/runs", json={"message": "hi"}, headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "unknown_team"
    r = await asgi.post("/api/workflows/flow/runs", json={"message": "hi"}, headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "unknown_workflow"
    r = await asgi.post("/api/agents/mine/runs", json={"message": "hi"}, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "completed"

    # Sessions and runs of another runnable do not exist for it either.
    sessions = (await asgi.get("/api/sessions/", headers=auth)).json()["results"]
    assert {s["agent_id"] for s in sessions} == {"mine"} and len(sessions) == 2
    assert (await asgi.get(f"/api/sessions/{theirs.session_id}/", headers=auth)).status_code == 404
    assert (await asgi.get(f"/api/sessions/{mine.session_id}/", headers=auth)).status_code == 200
    assert (await asgi.get(f"/api/runs/{theirs.run_id}/", headers=auth)).status_code == 404
    assert (await asgi.get(f"/api/runs/{mine.run_id}/", headers=auth)).status_code == 200
    assert (await asgi.post(f"/api/runs/{theirs.run_id}/cancel", headers=auth)).status_code == 404
    assert (await asgi.get(f"/api/runs/{theirs.run_id}/events", headers=auth)).status_code == 404
    assert (await asgi.get(f"/api/runs/{mine.run_id}/events", headers=auth)).status_code == 200
    assert (await asgi.delete(f"/api/sessions/{theirs.session_id}/", headers=auth)).status_code == 404
    assert await Run.objects.filter(pk=theirs.run_id).aexists()


async def test_a_team_scoped_token_runs_the_team_whose_members_it_does_not_list(asgi, user, two_agents):
    team = await sync_to_async(TeamFactory)(slug="crew", mode="collaborate")
    await sync_to_async(TeamMemberFactory)(team=team, agent=two_agents[1])
    _, secret = await anew_token(user, teams=["crew"])
    assert (await asgi.get("/api/agents/", headers=bearer(secret))).json() == []
    r = await asgi.post("/api/teams/crew/runs", json={"message": "hi"}, headers=bearer(secret))
    assert r.status_code == 200 and r.json()["status"] == "completed"
    sessions = (await asgi.get("/api/sessions/", headers=bearer(secret))).json()["results"]
    assert [s["team_id"] for s in sessions] == ["crew"]


async def test_a_scoped_token_on_the_agno_routes(asgi, user, two_agents):
    await sync_to_async(TeamFactory)(slug="crew")
    theirs = await sync_to_async(run_agent)(agent_id="theirs", user=user, message="hello")
    _, secret = await anew_token(user, agents=["mine"])
    auth = bearer(secret)
    assert [a["id"] for a in (await asgi.get(f"{OS}/agents", headers=auth)).json()] == ["mine"]
    config = (await asgi.get(f"{OS}/config", headers=auth)).json()
    assert [a["id"] for a in config["agents"]] == ["mine"] and config["teams"] == []
    assert (await asgi.get(f"{OS}/teams", headers=auth)).json() == []
    r = await asgi.get(f"{OS}/agents/theirs", headers=auth)
    assert r.status_code == 404 and r.json() == {"detail": "Agent not found", "code": "unknown_agent"}
    assert (await asgi.get(f"{OS}/teams/crew", headers=auth)).status_code == 404
    r = await asgi.post(f"{OS}/agents/theirs/runs", data={"message": "hi", "stream": "false"}, headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "unknown_agent"
    r = await asgi.post(f"{OS}/agents/mine/runs", data={"message": "hi", "stream": "false"}, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED"
    sessions = (await asgi.get(f"{OS}/sessions", headers=auth)).json()["data"]
    assert [s["agent_id"] for s in sessions] == ["mine"]
    assert (await asgi.get(f"{OS}/sessions/{theirs.session_id}", headers=auth)).status_code == 404
    r = await asgi.post(f"{OS}/agents/theirs/runs/{theirs.run_id}/cancel", headers=auth)
    assert r.status_code == 404


async def test_a_scoped_token_on_the_websocket(user, two_agents):
    theirs = await sync_to_async(run_agent)(agent_id="theirs", user=user, message="hello")
    _, secret = await anew_token(user, agents=["mine"])
    assert await ws("/ws/agents/theirs/", secret).connect(timeout=5) == (False, 4404)
    assert await ws("/ws/teams/crew/", secret).connect(timeout=5) == (False, 4404)
    comm = ws("/ws/agents/mine/", secret)
    assert await comm.connect(timeout=5) == (True, "agentos")
    await comm.send_json_to({"type": "resume", "run_id": str(theirs.run_id), "id": 1})
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["event"], frame["code"], frame["id"]) == ("Error", "not_found", 1)
    await comm.send_json_to({"type": "cancel", "run_id": str(theirs.run_id), "id": 2})
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["event"], frame["code"], frame["id"]) == ("Error", "not_found", 2)
    await comm.send_json_to({"type": "run", "message": "hi"})
    frames = [await comm.receive_json_from(timeout=5)]
    while frames[-1]["event"] not in ("RunCompleted", "RunError"):
        frames.append(await comm.receive_json_from(timeout=5))
    assert frames[-1]["event"] == "RunCompleted" and frames[-1]["agent_id"] == "mine"
    await comm.disconnect()


async def test_expired_and_revoked_tokens_are_refused_by_the_websocket(user, two_agents, settings):
    _, expired = await anew_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    assert await ws("/ws/agents/mine/", expired).connect(timeout=5) == (False, 4401)
    row, secret = await anew_token(user)
    comm = ws("/ws/agents/mine/", secret)
    assert (await comm.connect(timeout=5))[0]
    # Revoked while the socket is open: the next frame once the re-check interval has passed (a
    # minute; none here) closes it.
    settings.AGENTOS = {**settings.AGENTOS, "API_TOKEN_LAST_USED_SECONDS": 0}
    row.revoked_at = timezone.now()
    await row.asave()
    await comm.send_json_to({"type": "run", "message": "hi", "id": 7})
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["event"], frame["code"], frame["id"]) == ("Error", "token_revoked", 7)
    assert (await comm.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4401}
    assert not await Run.objects.filter(agent__slug="mine").aexists()


# ---- read-only --------------------------------------------------------------------------------------


async def test_a_read_only_token_reads_and_starts_nothing(asgi, user, two_agents):
    mine = await sync_to_async(run_agent)(agent_id="mine", user=user, message="hello")
    row, secret = await anew_token(user, read_only=True)
    auth = bearer(secret)
    assert (await asgi.get("/api/agents/", headers=auth)).status_code == 200
    assert (await asgi.get(f"/api/sessions/{mine.session_id}/", headers=auth)).status_code == 200
    assert (await asgi.get(f"{OS}/sessions", headers=auth)).status_code == 200
    for method, url, body in [
        ("POST", "/api/agents/mine/runs", {"message": "hi"}),
        ("POST", f"{OS}/agents/mine/runs", None),
        ("PATCH", f"/api/sessions/{mine.session_id}/", {"name": "x"}),
        ("POST", f"/api/runs/{mine.run_id}/cancel", None),
        ("POST", "/api/memories/", {"memory": "Likes tea."}),
    ]:
        r = await asgi.request(method, url, json=body, headers=auth)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["code"] == "token_read_only", (method, url)
    assert await Run.objects.acount() == 1
    # The websocket: resume yes, run and cancel no.
    comm = ws("/ws/agents/mine/", secret)
    assert (await comm.connect(timeout=5))[0]
    await comm.send_json_to({"type": "run", "message": "hi", "id": 1})
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["event"], frame["code"], frame["id"]) == ("Error", "token_read_only", 1)
    await comm.send_json_to({"type": "resume", "run_id": str(mine.run_id)})
    frames = [await comm.receive_json_from(timeout=5)]
    while frames[-1]["event"] != "RunCompleted":
        frames.append(await comm.receive_json_from(timeout=5))
    await comm.disconnect()
    assert await Run.objects.acount() == 1
    # It may still revoke itself.
    assert (await asgi.delete(f"/api/tokens/{row.pk}/", headers=auth)).status_code == 204


# ---- the admin ------------------------------------------------------------------------------------------


def test_staff_create_a_token_for_a_user_in_the_admin_shown_once_and_revoke_it(staff_user, two_agents):
    client = Client()
    client.force_login(staff_user)
    alice = UserFactory(username="alice")
    add = reverse("admin:sessions_app_apitoken_add")
    assert client.get(add).status_code == 200
    r = client.post(
        add,
        {
            "user": alice.pk,
            "name": "kiosk",
            "read_only": "on",
            "agents": ["mine"],
            "expires_at_0": "2999-01-01",
            "expires_at_1": "00:00:00",
        },
    )
    assert r.status_code == 200, r.content[:2000]
    assert "no-store" in r["Cache-Control"]
    row = ApiToken.objects.get(user=alice)
    secret = r.context["token"]
    assert secret.startswith(row.prefix) and row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret in r.content.decode()
    assert (row.name, row.read_only, row.agents, row.teams) == ("kiosk", True, ["mine"], [])
    # Never shown again: not on the token's page, not in the list.
    change = client.get(reverse("admin:sessions_app_apitoken_change", args=[row.pk]))
    listing = client.get(reverse("admin:sessions_app_apitoken_changelist"))
    assert change.status_code == listing.status_code == 200
    assert secret not in change.content.decode() and secret not in listing.content.decode()
    assert row.prefix in listing.content.decode() and "agents: mine" in listing.content.decode()
    # The token works for alice, limited as chosen.
    api = Client()
    r = api.get("/api/agents/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert [a["agent_id"] for a in r.json()] == ["mine"]
    # Revoked by the admin action.
    r = client.post(
        reverse("admin:sessions_app_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [str(row.pk)]},
    )
    assert r.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    r = api.get("/api/agents/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
