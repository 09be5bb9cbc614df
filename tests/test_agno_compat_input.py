"""Input the agno-compatible routes (/os/) answered with a 500 until the /os fuzz test
(test_schema_fuzz_os.py) and its probes found it: each is a plain request here, answered with a
documented 4xx (or an empty page) in agno's shapes, and nothing stored."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import schemathesis
from django.urls import clear_url_caches
from schemathesis.specs.openapi.checks import status_code_conformance

from agentos_site import urls as site_urls
from agentos_site.asgi import application
from agents_app.runs import arun_agent
from sessions_app.models import Memory, Run, Session
from tests.conftest import bearer
from tests.test_schema_fuzz import hostile_bodies

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"
document = schemathesis.openapi.from_asgi(f"{OS}/openapi.json", application)
HUGE = 10**20  # an offset past 2**63: SQLite answered "datatype mismatch", PostgreSQL "out of range"


@pytest.mark.parametrize("listing", ["sessions", "memories"])
async def test_a_page_past_any_offset_the_database_takes_is_empty(asgi, offline_agent, user, token, listing):
    await arun_agent(agent_id=offline_agent.slug, user=user, message="hi")
    await Memory.objects.acreate(user=user, memory="Likes tea.")
    first = await asgi.get(f"{OS}/{listing}", headers=bearer(token))
    assert first.status_code == 200 and len(first.json()["data"]) == 1
    for query in (f"page={HUGE}", f"page={HUGE}&limit={HUGE}", "page=2", "page=99999999999999999&limit=100"):
        r = await asgi.get(f"{OS}/{listing}?{query}", headers=bearer(token))
        assert r.status_code == 200, (query, r.text[:300])
        assert r.json()["data"] == [] and r.json()["meta"]["total_count"] == 1, query


BODY_OPERATIONS = [
    ("POST", "/os/agents/{agent_id}/runs"),
    ("POST", "/os/sessions/{session_id}/rename"),
    ("POST", "/os/memories"),
    ("PATCH", "/os/memories/{memory_id}"),
    ("DELETE", "/os/memories"),
]


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
async def test_hostile_bodies_are_a_documented_4xx_in_agnos_shape(asgi, offline_agent, user, token, method, path):
    """The REST API's hostile bodies (oversized, too many fields, not UTF-8, malformed or too deep
    JSON, no multipart boundary, an unsupported media type) on every /os operation with a body. An
    oversized body and too many form fields were a 500 here: Django's request-size guards reached
    agno's error renderer unconverted."""
    started = await arun_agent(agent_id=offline_agent.slug, user=user, message="hi")
    memory = await Memory.objects.acreate(user=user, memory="Likes tea.")
    path_parameters = {
        "agent_id": offline_agent.slug,
        "session_id": str(started.session_id),
        "memory_id": str(memory.pk),
    }
    url = path.format(**path_parameters)
    operation = document[path][method]
    for name, (expected, body, content_type) in hostile_bodies().items():
        headers = bearer(token) | {"Content-Type": content_type}
        r = await asgi.request(method, url, content=body, headers=headers)
        if name == "json not an object":
            expected = 422  # FastAPI's answer to a body of the wrong type (the REST API's is a 400)
        assert r.status_code == expected, (name, r.status_code, r.text[:300])
        assert {"detail", "code"} <= r.json().keys(), (name, r.text[:300])
        case = operation.Case(path_parameters={k: v for k, v in path_parameters.items() if k in path})
        case.validate_response(r, checks=[status_code_conformance])
    assert await Run.objects.acount() == 1 and await Session.objects.acount() == 1
    assert [m.memory async for m in Memory.objects.all()] == ["Likes tea."]


async def test_body_errors_of_a_delete_are_located_in_the_body(asgi, token):
    r = await asgi.request("DELETE", f"{OS}/memories", json={"memory_ids": "not a list"}, headers=bearer(token))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "memory_ids"]
    r = await asgi.request("DELETE", f"{OS}/sessions/x?type=robot", headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "type"]


def _operations(raw: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, ops in raw["paths"].items() for method in ops}


async def test_the_document_follows_the_prefix_setting(asgi, settings):
    """The document lists the routes where it is served, whatever `AGNO_COMPAT_PREFIX` is."""
    default = (await asgi.get(f"{OS}/openapi.json")).json()
    original = settings.AGENTOS
    settings.AGENTOS = {**original, "AGNO_COMPAT_PREFIX": "agno/v1"}
    try:
        importlib.reload(site_urls)  # the site mounts the routes under the prefix when its URLconf loads
        clear_url_caches()
        moved = (await asgi.get("/agno/v1/openapi.json")).json()
    finally:
        settings.AGENTOS = original
        importlib.reload(site_urls)
        clear_url_caches()
    assert _operations(moved) == {op.replace(" /os/", " /agno/v1/") for op in _operations(default)}
    assert moved["paths"]["/agno/v1/agents/{agent_id}/runs"]["post"]["operationId"] == "agents_runs_create"
