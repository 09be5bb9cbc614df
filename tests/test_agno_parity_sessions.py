"""agno parity (issue 20) over the real ASGI stack: sessions created, updated and bulk-deleted
through agno's routes, run previews, a component's runs, /info, memory statistics, client-chosen
session ids on runs (and their isolation, races included), and the public-read setting. Every
answer is parsed with agno's own schemas."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from agno.os.routers.memory.schemas import UserStatsSchema
from agno.os.schema import (
    AgentSessionDetailSchema,
    InfoResponse,
    RunSchema,
    SessionRunPreviewSchema,
    TeamSessionDetailSchema,
    WorkflowSessionDetailSchema,
)
from django.db import close_old_connections
from django.test import override_settings

from agents_app.runs import run_agent
from sessions_app.models import Memory, Run, Session
from sessions_app.services import SessionNotFound
from tests.conftest import bearer
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"


@pytest.fixture
def components(openai_model, offline_agent):
    member = AgentFactory(slug="member", name="Member", model=openai_model)
    team = TeamFactory(slug="crew", name="Crew", model=openai_model, mode="route")
    TeamMemberFactory(team=team, agent=member)
    workflow = WorkflowFactory(slug="flow", name="Flow")
    WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=member, order=0)
    return offline_agent


async def _run(asgi, token, agent_id, message="what is 2+3?", **extra):
    data = {"message": message, "stream": "false", **extra}
    return await asgi.post(f"{OS}/agents/{agent_id}/runs", data=data, headers=bearer(token))


# ---- create / update / bulk delete ------------------------------------------------------------


async def test_create_session_of_each_kind_in_agnos_shapes(asgi, components, token):
    agent = components
    chosen = str(uuid.uuid4())
    body = {
        "session_id": chosen,
        "session_name": "Planning",
        "session_state": {"step": 1},
        "metadata": {"tag": "x"},
        "agent_id": agent.slug,
        "user_id": "ignored",
    }
    r = await asgi.post(f"{OS}/sessions", params={"type": "agent"}, json=body, headers=bearer(token))
    assert r.status_code == 201, r.text
    created = AgentSessionDetailSchema.model_validate(r.json())
    assert (created.session_id, created.session_name, created.session_state, created.metadata) == (
        chosen,
        "Planning",
        {"step": 1},
        {"tag": "x"},
    )
    assert created.agent_id == agent.slug

    # The same id again: a 409, for its owner as for anyone else (nothing told about the owner).
    again = await asgi.post(f"{OS}/sessions", params={"type": "agent"}, json=body, headers=bearer(token))
    assert again.status_code == 409 and again.json()["code"] == "session_exists"

    r = await asgi.post(f"{OS}/sessions", params={"type": "team"}, json={"team_id": "crew"}, headers=bearer(token))
    assert r.status_code == 201, r.text
    assert TeamSessionDetailSchema.model_validate(r.json()).team_id == "crew"
    r = await asgi.post(
        f"{OS}/sessions", params={"type": "workflow"}, json={"workflow_id": "flow"}, headers=bearer(token)
    )
    assert r.status_code == 201, r.text
    assert WorkflowSessionDetailSchema.model_validate(r.json()).workflow_id == "flow"

    # Missing or unknown component; a session id that is not a UUID.
    r = await asgi.post(f"{OS}/sessions", json={}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "agent_id"]
    r = await asgi.post(f"{OS}/sessions", json={"agent_id": "nope"}, headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "unknown_agent"
    r = await asgi.post(f"{OS}/sessions", json={"agent_id": agent.slug, "session_id": "x"}, headers=bearer(token))
    assert r.status_code == 422

    # A run in the created session continues it.
    r = await _run(asgi, token, agent.slug, session_id=chosen)
    assert r.status_code == 200 and r.json()["session_id"] == chosen


async def test_update_session_replaces_what_is_given(asgi, components, token, other_token):
    agent = components
    r = await _run(asgi, token, agent.slug)
    session_id = r.json()["session_id"]
    patch = {
        "session_name": "Renamed",
        "session_state": {"a": 1},
        "metadata": {"k": "v"},
        "summary": {"summary": "We added numbers.", "updated_at": "2025-10-21T14:30:00Z"},
    }
    r = await asgi.patch(f"{OS}/sessions/{session_id}", json=patch, headers=bearer(token))
    assert r.status_code == 200, r.text
    updated = AgentSessionDetailSchema.model_validate(r.json())
    assert (updated.session_name, updated.session_state, updated.metadata) == ("Renamed", {"a": 1}, {"k": "v"})
    assert updated.session_summary["summary"] == "We added numbers."
    stored = await Session.objects.aget(pk=session_id)
    assert stored.summary == "We added numbers." and stored.summary_until is not None

    # Only the given fields change.
    r = await asgi.patch(f"{OS}/sessions/{session_id}", json={"session_name": "Again"}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["session_state"] == {"a": 1}

    # Another user's session, or a bad body.
    r = await asgi.patch(f"{OS}/sessions/{session_id}", json={"session_name": "x"}, headers=bearer(other_token))
    assert r.status_code == 404
    r = await asgi.patch(f"{OS}/sessions/{session_id}", json={"summary": {"x": 1}}, headers=bearer(token))
    assert r.status_code == 422


async def test_bulk_delete_deletes_only_the_callers_sessions(asgi, components, token, other_token):
    agent = components
    mine = [(await _run(asgi, token, agent.slug)).json()["session_id"] for _ in range(2)]
    theirs = (await _run(asgi, other_token, agent.slug)).json()["session_id"]
    body = {"session_ids": [*mine, theirs, "not-a-uuid"], "session_types": ["agent"] * 4}
    r = await asgi.request("DELETE", f"{OS}/sessions", json=body, headers=bearer(token))
    assert r.status_code == 204, r.text
    assert not await Session.objects.filter(pk__in=mine).aexists()
    assert await Session.objects.filter(pk=theirs).aexists()
    assert not await Run.objects.filter(session_id__in=mine).aexists()

    r = await asgi.request(
        "DELETE", f"{OS}/sessions", json={"session_ids": [theirs], "session_types": []}, headers=bearer(token)
    )
    assert r.status_code == 422
    r = await asgi.request(
        "DELETE",
        f"{OS}/sessions",
        json={"session_ids": [theirs], "session_types": ["agent", "agent"]},
        headers=bearer(token),
    )
    assert r.status_code == 400


# ---- previews and a component's runs -----------------------------------------------------------


async def test_run_previews_and_component_runs(asgi, components, token, other_token):
    agent = components
    first = (await _run(asgi, token, agent.slug, message="x" * 400)).json()
    session_id = first["session_id"]
    await _run(asgi, token, agent.slug, session_id=session_id)

    r = await asgi.get(f"{OS}/sessions/{session_id}/run-previews", headers=bearer(token))
    assert r.status_code == 200, r.text
    previews = [SessionRunPreviewSchema.model_validate(p) for p in r.json()]
    assert len(previews) == 2 and previews[0].run_id == first["run_id"]
    assert len(previews[0].run_input) == 280 and previews[0].status == "COMPLETED"
    assert previews[0].agent_id == agent.slug and previews[0].content_preview
    r = await asgi.get(f"{OS}/sessions/{session_id}/run-previews", params={"status": "error"}, headers=bearer(token))
    assert r.json() == []
    assert (await asgi.get(f"{OS}/sessions/{session_id}/run-previews", headers=bearer(other_token))).status_code == 404

    r = await asgi.get(f"{OS}/agents/{agent.slug}/runs", params={"session_id": session_id}, headers=bearer(token))
    assert r.status_code == 200, r.text
    listed = [RunSchema.model_validate(x) for x in r.json()]
    assert listed[0].run_id == first["run_id"] and len(listed) == 2
    r = await asgi.get(
        f"{OS}/agents/{agent.slug}/runs/{first['run_id']}", params={"session_id": session_id}, headers=bearer(token)
    )
    assert r.status_code == 200 and r.json()["run_id"] == first["run_id"]
    # Not the caller's session, the wrong component, no session_id, an unknown run: 404 / 422.
    for url, params, headers, expected in [
        (f"{OS}/agents/{agent.slug}/runs", {"session_id": session_id}, bearer(other_token), 404),
        (f"{OS}/agents/member/runs", {"session_id": session_id}, bearer(token), 404),
        (f"{OS}/agents/{agent.slug}/runs", {}, bearer(token), 422),
        (f"{OS}/agents/{agent.slug}/runs/{uuid.uuid4()}", {"session_id": session_id}, bearer(token), 404),
        (f"{OS}/teams/crew/runs", {"session_id": session_id}, bearer(token), 404),
    ]:
        assert (await asgi.get(url, params=params, headers=headers)).status_code == expected, url


# ---- client-chosen session ids ------------------------------------------------------------------


async def test_a_run_naming_an_unknown_session_creates_it_for_the_caller(asgi, components, token, other_token):
    agent = components
    chosen = str(uuid.uuid4())
    r = await _run(asgi, token, agent.slug, session_id=chosen)
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == chosen
    r = await _run(asgi, token, agent.slug, session_id=chosen)  # and then continues it
    assert r.status_code == 200 and r.json()["session_id"] == chosen
    assert await Run.objects.filter(session_id=chosen).acount() == 2

    # Another user naming that id: the same 404 as an id that names nothing they may use.
    taken = await _run(asgi, other_token, agent.slug, session_id=chosen)
    assert taken.status_code == 404
    assert taken.json() == {"detail": f"Session with id '{chosen}' not found", "code": "unknown_session"}
    # The owner's session, named for another agent: a 404 too (a session belongs to one agent).
    other = await _run(asgi, token, "member", session_id=chosen)
    assert other.status_code == 404 and other.json()["code"] == "unknown_session"
    assert await Session.objects.filter(pk=chosen).acount() == 1


def test_two_creators_of_one_session_id_race(components, user, other_user):
    """Two users race to create the same chosen id: one wins, the other gets SessionNotFound."""
    agent = components
    chosen = uuid.uuid4()
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def go(name, who):
        barrier.wait()
        try:
            outcomes[name] = run_agent(agent_id=agent.slug, user=who, message="2+2", session_id=chosen).session_id
        except SessionNotFound as exc:
            outcomes[name] = exc
        finally:
            close_old_connections()

    threads = [threading.Thread(target=go, args=(n, u)) for n, u in (("a", user), ("b", other_user))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [v for v in outcomes.values() if str(v) == str(chosen)]
    losers = [v for v in outcomes.values() if isinstance(v, SessionNotFound)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert Session.objects.filter(pk=chosen).count() == 1


# ---- /info, memory stats, public read -----------------------------------------------------------


async def test_info_and_user_memory_stats(asgi, components, token, user):
    r = await asgi.get(f"{OS}/info", headers=bearer(token))
    assert r.status_code == 200
    info = InfoResponse.model_validate(r.json())
    assert (info.agent_count, info.team_count, info.workflow_count) == (2, 1, 1)
    assert info.auth_mode == "security_key"

    r = await asgi.get(f"{OS}/user_memory_stats", headers=bearer(token))
    assert r.status_code == 200 and r.json()["data"] == []
    await Memory.objects.acreate(user=user, memory="likes tea")
    await Memory.objects.acreate(user=user, memory="lives in Oslo")
    r = await asgi.get(f"{OS}/user_memory_stats", headers=bearer(token))
    rows = [UserStatsSchema.model_validate(x) for x in r.json()["data"]]
    assert [(x.user_id, x.total_memories) for x in rows] == [(str(user.pk), 2)]
    assert r.json()["meta"]["total_count"] == 1


PUBLIC = ["/config", "/health", "/info", "/agents", "/teams", "/workflows", "/teams/crew", "/workflows/flow"]
PRIVATE = ["/sessions", "/memories", "/user_memory_stats", "/memory_topics"]


async def test_public_read_is_off_by_default_and_never_opens_user_data(asgi, components):
    agent = components
    public = [*PUBLIC, f"/agents/{agent.slug}"]
    for path in public:
        if path != "/health":
            assert (await asgi.get(f"{OS}{path}")).status_code == 401, path
    with override_settings(AGENTOS={"OS_PUBLIC_READ": True}):
        for path in public:
            r = await asgi.get(f"{OS}{path}")
            assert r.status_code in (200, 503), (path, r.text)  # health: 503 when a dependency is down
        for path in PRIVATE:
            assert (await asgi.get(f"{OS}{path}")).status_code == 401, path
        r = await asgi.post(f"{OS}/agents/{agent.slug}/runs", data={"message": "hi", "stream": "false"})
        assert r.status_code == 401


async def test_public_read_hides_restricted_agents(asgi, components, user):
    def restrict():
        AgentFactory(slug="secret", name="Secret", access="restricted").allowed_users.add(user)

    await asyncio.to_thread(restrict)
    with override_settings(AGENTOS={"OS_PUBLIC_READ": True}):
        slugs = [a["id"] for a in (await asgi.get(f"{OS}/agents")).json()]
        assert "secret" not in slugs and components.slug in slugs
        assert (await asgi.get(f"{OS}/agents/secret")).status_code == 404


# ---- fork ----------------------------------------------------------------------------------------


async def test_fork_copies_a_session_up_to_a_run(asgi, components, token, other_token):
    agent = components
    first = (await _run(asgi, token, agent.slug, message="what is 2+3?")).json()
    session_id = first["session_id"]
    second = (await _run(asgi, token, agent.slug, message="what is 4+4?", session_id=session_id)).json()

    r = await asgi.post(f"{OS}/agents/{agent.slug}/sessions/{session_id}/fork", headers=bearer(token))
    assert r.status_code == 200, r.text
    fork = r.json()
    assert fork["forked_from_session_id"] == session_id and fork["session_id"] != session_id
    runs = (await asgi.get(f"{OS}/sessions/{fork['session_id']}/runs", headers=bearer(token))).json()
    assert [x["run_input"] for x in runs] == ["what is 2+3?", "what is 4+4?"]
    assert {x["run_id"] for x in runs}.isdisjoint({first["run_id"], second["run_id"]})
    assert runs[0]["messages"] and runs[0]["content"] == first["content"]

    # Up to the first run only; the fork goes on by itself and the original is untouched.
    r = await asgi.post(
        f"{OS}/agents/{agent.slug}/sessions/{session_id}/fork",
        params={"run_id": first["run_id"]},
        headers=bearer(token),
    )
    short = r.json()["session_id"]
    assert len((await asgi.get(f"{OS}/sessions/{short}/runs", headers=bearer(token))).json()) == 1
    assert (await _run(asgi, token, agent.slug, session_id=short)).status_code == 200
    assert await Run.objects.filter(session_id=session_id).acount() == 2

    # Not yours, not that agent's, or nothing to copy.
    assert (
        await asgi.post(f"{OS}/agents/{agent.slug}/sessions/{session_id}/fork", headers=bearer(other_token))
    ).status_code == 404
    assert (await asgi.post(f"{OS}/agents/member/sessions/{session_id}/fork", headers=bearer(token))).status_code == 404
    empty = (await asgi.post(f"{OS}/sessions", json={"agent_id": agent.slug}, headers=bearer(token))).json()[
        "session_id"
    ]
    r = await asgi.post(f"{OS}/agents/{agent.slug}/sessions/{empty}/fork", headers=bearer(token))
    assert r.status_code == 400 and r.json()["code"] == "nothing_to_fork"


# ---- FastAPI's answers for unknown paths and methods --------------------------------------------


async def test_unknown_paths_and_methods_answer_fastapis_json(asgi, token):
    for path in ("/os/", "/os/nope", "/os/agents/", "/os/knowledge/content", "/os/sessions/x/y/z"):
        r = await asgi.get(path, headers=bearer(token))
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found", "code": "not_found"}), path
    # A wrong method is a 405 before authentication, as FastAPI routes before its dependencies.
    for method, path in (("PUT", "/os/health"), ("DELETE", "/os/config"), ("PUT", "/os/agents"), ("GET", "/os/info/x")):
        r = await asgi.request(method, path)
        if path == "/os/info/x":
            assert r.status_code == 404
            continue
        assert r.status_code == 405, (method, path)
        assert r.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}
        assert r.headers["allow"]
    r = await asgi.post("/os/sessions", json={"agent_id": 5, "session_state": "x"}, headers=bearer(token))
    assert r.status_code == 422 and {tuple(d["loc"]) for d in r.json()["detail"]} == {("body", "session_state")}


# ---- memory consolidation -------------------------------------------------------------------------


@pytest.fixture
def worker_stopped_after():
    """The consolidation runs on the embedded Celery worker, started in this process by the first
    task: stopped after the test, so its periodic sweeps do not outlive this test's database rows."""
    yield
    from agents_app.embedded_worker import stop_embedded_worker

    stop_embedded_worker()


@pytest.mark.usefixtures("worker_stopped_after")
async def test_optimize_memories_per_scope_recorded_and_optionally_applied(
    asgi, components, openai_model, token, user, scripted_model
):
    import json as _json

    from sessions_app.models import MemoryOptimization

    private = await asyncio.to_thread(
        lambda: AgentFactory(slug="private", name="Private", model=openai_model, memory_scope="agent")
    )
    r = await asgi.post(f"{OS}/optimize-memories", json={"user_id": "x", "model": "scripted"}, headers=bearer(token))
    assert r.status_code == 404  # no memories yet, as agno answers
    for text in ("Likes tea", "Likes green tea"):
        await Memory.objects.acreate(user=user, memory=text)
    await Memory.objects.acreate(user=user, agent=private, memory="Private fact")

    # A preview (apply=false): proposed memories, nothing replaced; one model call per scope.
    scripted_model.push_text(_json.dumps({"memories": [{"memory": "Likes tea, green too", "topics": ["drinks"]}]}))
    scripted_model.push_text(_json.dumps({"memories": [{"memory": "Private fact", "topics": []}]}))
    body = {"user_id": "x", "model": f"openai:{openai_model.model_id}", "apply": False}
    r = await asgi.post(f"{OS}/optimize-memories", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    from agno.os.routers.memory.schemas import OptimizeMemoriesResponse

    preview = OptimizeMemoriesResponse.model_validate(r.json())
    assert (preview.memories_before, preview.memories_after) == (3, 2)
    assert {m.memory for m in preview.memories} == {"Likes tea, green too", "Private fact"}
    assert {m.memory_id for m in preview.memories} == {""}
    assert preview.tokens_saved == preview.tokens_before - preview.tokens_after > 0
    assert await Memory.objects.filter(user=user).acount() == 3
    prompts = [str(req["messages"]) for req in scripted_model.requests[-2:]]
    assert not any("Private fact" in p and "Likes tea" in p for p in prompts)  # scopes never mixed

    # Applied: the scope's memories are replaced; the private scope keeps its own.
    scripted_model.push_text(_json.dumps({"memories": [{"memory": "Likes tea, green too", "topics": ["drinks"]}]}))
    scripted_model.push_text(_json.dumps({"memories": [{"memory": "Private fact", "topics": []}]}))
    r = await asgi.post(f"{OS}/optimize-memories", json={**body, "apply": True}, headers=bearer(token))
    assert r.status_code == 200, r.text
    rows = {(m.memory, m.agent_id) async for m in Memory.objects.filter(user=user)}
    assert rows == {("Likes tea, green too", None), ("Private fact", private.pk)}
    statuses = [o.status async for o in MemoryOptimization.objects.order_by("created_at")]
    assert statuses == ["completed", "completed"]

    # A model that fails: a 502, recorded as failed; the memories stay.
    scripted_model.push_text("not json")
    scripted_model.push_text("still not json")
    r = await asgi.post(f"{OS}/optimize-memories", json=body, headers=bearer(token))
    assert r.status_code == 502 and r.json()["code"] == "model_error"
    assert (await MemoryOptimization.objects.order_by("-created_at").afirst()).status == "failed"
    assert await Memory.objects.filter(user=user).acount() == 2
    # No model named, none configured; an unknown one.
    r = await asgi.post(f"{OS}/optimize-memories", json={"user_id": "x"}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "model"]
    r = await asgi.post(f"{OS}/optimize-memories", json={"user_id": "x", "model": "nope:nope"}, headers=bearer(token))
    assert r.status_code == 422


async def test_client_chosen_session_ids_on_the_rest_api_too(asgi, components, token, other_token):
    agent = components
    chosen = str(uuid.uuid4())
    body = {"message": "what is 2+3?", "session_id": chosen, "stream": False}
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == chosen
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=body, headers=bearer(other_token))
    assert r.status_code == 404 and r.json()["code"] == "unknown_session"


async def test_team_and_workflow_runs_of_a_session(asgi, components, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "member"}, "id": "r"}])
    scripted_model.push_text("member answers")
    team = (
        await asgi.post(f"{OS}/teams/crew/runs", data={"message": "hi", "stream": "false"}, headers=bearer(token))
    ).json()
    r = await asgi.get(f"{OS}/teams/crew/runs", params={"session_id": team["session_id"]}, headers=bearer(token))
    assert r.status_code == 200 and [x["run_id"] for x in r.json()] == [team["run_id"]]  # not the member's run
    assert r.json()[0]["team_id"] == "crew"
    # A team session forks with its member runs, re-linked to the copied team run.
    r = await asgi.post(f"{OS}/teams/crew/sessions/{team['session_id']}/fork", headers=bearer(token))
    assert r.status_code == 200, r.text
    copied = (await asgi.get(f"{OS}/sessions/{r.json()['session_id']}/runs", headers=bearer(token))).json()
    top = [x for x in copied if "parent_run_id" not in x]
    members = [x for x in copied if "parent_run_id" in x]
    assert len(top) == 1 and top[0]["run_id"] != team["run_id"] and top[0]["content"] == team["content"]
    assert [m["parent_run_id"] for m in members] == [top[0]["run_id"]] and members[0]["agent_id"] == "member"
    scripted_model.push_text("step answer")
    flow = (
        await asgi.post(f"{OS}/workflows/flow/runs", data={"message": "go", "stream": "false"}, headers=bearer(token))
    ).json()
    r = await asgi.get(
        f"{OS}/workflows/flow/runs/{flow['run_id']}", params={"session_id": flow["session_id"]}, headers=bearer(token)
    )
    assert r.status_code == 200 and r.json()["workflow_id"] == "flow" and r.json()["step_executor_runs"]
    r = await asgi.get(
        f"{OS}/workflows/flow/runs",
        params={"session_id": flow["session_id"], "status": "completed"},
        headers=bearer(token),
    )
    assert [x["run_id"] for x in r.json()] == [flow["run_id"]]
