"""CORS for /api/ and /os/ (django-cors-headers, configured in agentos_site/settings.py from the
environment) through the real ASGI application: preflights and simple requests from an allowed
origin get the headers, a disallowed origin and other paths get none; the deprecated
AGENTOS["AGNO_COMPAT_CORS_ORIGINS"] still allows its origins on the agno routes, with a warning."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import checks

from tests.conftest import bearer
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)

UI = "http://localhost:3000"
EVIL = "https://evil.example"


@pytest.fixture
def cors(settings: Any) -> Any:
    settings.CORS_ALLOWED_ORIGINS = [UI]
    settings.CORS_ALLOWED_ORIGIN_REGEXES = [r"^https://[a-z0-9-]+\.agents\.example$"]
    return settings


@pytest.fixture
def demo(db: Any) -> Any:
    return AgentFactory(slug="demo", name="Demo")


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


@pytest.mark.parametrize("url", ["/api/agents/demo/runs", "/os/agents/demo/runs", "/os/sessions/abc/rename"])
async def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(asgi, cors, demo, url):
    r = await asgi.options(url, headers=preflight(UI))
    assert r.status_code == 200 and r.content == b""
    assert r.headers["access-control-allow-origin"] == UI
    assert r.headers["access-control-allow-methods"] == "DELETE, GET, OPTIONS, PATCH, POST, PUT"
    assert r.headers["access-control-allow-headers"] == (
        "accept, authorization, content-type, user-agent, x-csrftoken, x-requested-with, "
        "idempotency-key, last-event-id, x-request-id"
    )
    assert r.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in r.headers
    assert "origin" in r.headers["vary"].lower()


async def test_simple_and_streamed_requests_from_allowed_origins_get_the_headers(asgi, cors, demo, token):
    for origin in (UI, "https://team-1.agents.example"):
        r = await asgi.get("/api/agents/", headers={"Origin": origin, **bearer(token)})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-expose-headers"] == "X-Request-ID, Retry-After"
        r = await asgi.get("/os/agents", headers={"Origin": origin, **bearer(token)})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
    # An error answer too (the page can read why), and an event stream.
    r = await asgi.get("/api/agents/", headers={"Origin": UI})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == UI
    r = await asgi.post(
        "/api/agents/demo/runs", json={"message": "hi", "stream": True}, headers={"Origin": UI, **bearer(token)}
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["access-control-allow-origin"] == UI


async def test_a_disallowed_origin_gets_no_cors_headers(asgi, cors, demo, token):
    for origin in (EVIL, "http://localhost:3001", "https://agents.example", "https://x.agents.example.evil.com"):
        r = await asgi.options("/os/agents/demo/runs", headers=preflight(origin))
        assert "access-control-allow-origin" not in r.headers, origin
        assert "access-control-allow-methods" not in r.headers, origin
        r = await asgi.get("/api/agents/", headers={"Origin": origin, **bearer(token)})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers, origin


async def test_only_the_apis_get_cors(asgi, cors):
    for url in ("/healthz", "/chat/login/", "/admin/login/"):
        r = await asgi.get(url, headers={"Origin": UI})
        assert "access-control-allow-origin" not in r.headers, url


async def test_no_origin_is_allowed_by_default(asgi, demo, token):
    from django.conf import settings

    assert settings.CORS_ALLOWED_ORIGINS == [] and settings.CORS_ALLOWED_ORIGIN_REGEXES == []
    r = await asgi.options("/os/agents/demo/runs", headers=preflight(UI))
    assert "access-control-allow-origin" not in r.headers
    r = await asgi.get("/os/agents", headers={"Origin": UI, **bearer(token)})
    assert "access-control-allow-origin" not in r.headers


async def test_the_deprecated_agno_origins_setting_still_allows_them_on_the_agno_routes(asgi, settings, demo, token):
    settings.AGENTOS = {**settings.AGENTOS, "AGNO_COMPAT_CORS_ORIGINS": [UI]}
    r = await asgi.options("/os/agents/demo/runs", headers=preflight(UI))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI
    r = await asgi.get("/os/agents", headers={"Origin": UI, **bearer(token)})
    assert r.headers["access-control-allow-origin"] == UI
    # Only there, and only for its origins.
    r = await asgi.get("/api/agents/", headers={"Origin": UI, **bearer(token)})
    assert "access-control-allow-origin" not in r.headers
    r = await asgi.get("/os/agents", headers={"Origin": EVIL, **bearer(token)})
    assert "access-control-allow-origin" not in r.headers
    warnings = [m for m in await sync_to_async(checks.run_checks)() if m.id == "agentos.W003"]
    assert len(warnings) == 1 and "deprecated" in warnings[0].msg
    settings.AGENTOS = {**settings.AGENTOS, "AGNO_COMPAT_CORS_ORIGINS": []}
    assert not [m for m in await sync_to_async(checks.run_checks)() if m.id == "agentos.W003"]
