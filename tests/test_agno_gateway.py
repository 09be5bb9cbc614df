"""An agno gateway over this site: agno's own FastAPI AgentOS, in this process (fastapi's TestClient),
serving a `RemoteAgent`, a `RemoteTeam` and a `RemoteWorkflow` that point at a live server of this
site (runserver, tests/test_agno_client_parity.py's seeding, AGENTOS_OS_PUBLIC_READ on so agno's
remote classes read their configuration without a token, as they do). Each is run through the
gateway streamed and not; the gateway forwards the caller's Bearer token, and the session ids the
gateway chooses are created here for that token's user (issue 20)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.test_agno_client_parity import ROUTE, start_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server) -> Iterator[dict]:
    yield from start_site(tmp_path_factory, _scripted_server.base_url, AGENTOS_OS_PUBLIC_READ="true")


@pytest.fixture(scope="module")
def gateway(site) -> Iterator[TestClient]:
    os.environ.setdefault("AGNO_TELEMETRY", "false")  # agno would report to its own service
    from agno.agent import RemoteAgent
    from agno.os import AgentOS
    from agno.team import RemoteTeam
    from agno.workflow import RemoteWorkflow

    agent_os = AgentOS(
        id="gateway",
        agents=[RemoteAgent(base_url=site["base"], agent_id="scripted", timeout=30)],
        teams=[RemoteTeam(base_url=site["base"], team_id="crew", timeout=30)],
        workflows=[RemoteWorkflow(base_url=site["base"], workflow_id="flow", timeout=30)],
        telemetry=False,
    )
    with TestClient(agent_os.get_app()) as client:
        yield client


def _sse(body: str) -> list[dict]:
    events = []
    for block in body.split("\n\n"):
        data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def test_the_gateway_lists_this_sites_agent_team_and_workflow(gateway, site):
    config = gateway.get("/config").json()
    assert [a["id"] for a in config["agents"]] == ["scripted"]
    assert [t["id"] for t in config["teams"]] == ["crew"]
    assert [w["id"] for w in config["workflows"]] == ["flow"]


def test_an_agent_through_the_gateway(gateway, site, scripted_model):
    scripted_model.push_text("Hello through the gateway.")
    r = gateway.post("/agents/scripted/runs", data={"message": "hi", "stream": "false"}, headers=site["alice"])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["content"] == "Hello through the gateway." and out["status"] == "COMPLETED"
    session_id = out["session_id"]

    scripted_model.push_text("Streamed ")
    r = gateway.post(
        "/agents/scripted/runs",
        data={"message": "again", "stream": "true", "session_id": session_id},
        headers=site["alice"],
    )
    assert r.status_code == 200, r.text
    events = _sse(r.text)
    assert events[0]["event"] == "RunStarted" and events[-1]["event"] == "RunCompleted"
    assert events[-1]["session_id"] == session_id

    # The session is the token's user's on the site, with both runs; not another user's.
    runs = httpx.get(f"{site['base']}/sessions/{session_id}/runs", headers=site["alice"]).json()
    assert [x["run_input"] for x in runs] == ["hi", "again"]
    assert httpx.get(f"{site['base']}/sessions/{session_id}", headers=site["mallory"]).status_code == 404


def test_a_team_through_the_gateway(gateway, site, scripted_model):
    scripted_model.push_tool_calls(ROUTE)
    scripted_model.push_text("The member answers.")
    r = gateway.post("/teams/crew/runs", data={"message": "hi team", "stream": "false"}, headers=site["alice"])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["team_id"] == "crew" and out["status"] == "COMPLETED"

    scripted_model.push_tool_calls(ROUTE)
    scripted_model.push_text("Streamed member.")
    r = gateway.post(
        "/teams/crew/runs",
        data={"message": "again", "stream": "true", "session_id": out["session_id"]},
        headers=site["alice"],
    )
    assert r.status_code == 200, r.text
    events = _sse(r.text)
    assert events[0]["event"] == "TeamRunStarted" and events[-1]["event"] == "TeamRunCompleted"


def test_a_workflow_through_the_gateway(gateway, site, scripted_model):
    scripted_model.push_text("Step answer.")
    r = gateway.post("/workflows/flow/runs", data={"message": "go", "stream": "false"}, headers=site["alice"])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["workflow_id"] == "flow" and out["status"] == "COMPLETED"

    scripted_model.push_text("Streamed step.")
    r = gateway.post(
        "/workflows/flow/runs",
        data={"message": "go again", "stream": "true", "session_id": out["session_id"]},
        headers=site["alice"],
    )
    assert r.status_code == 200, r.text
    events = _sse(r.text)
    assert events[0]["event"] == "WorkflowStarted" and events[-1]["event"] == "WorkflowCompleted"


def test_without_a_token_the_gateway_runs_nothing_here(gateway, site):
    r = gateway.post("/agents/scripted/runs", data={"message": "hi", "stream": "false"})
    assert r.status_code >= 400
