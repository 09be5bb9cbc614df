"""Rate limits on starting runs (issue 18, part 3): per user and per user and runnable, site defaults
and per-component overrides, on REST, the websocket and agno's routes; and, on Redis, holding
across two server processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from sessions_app.models import Run
from tests.conftest import bearer
from tests.factories import AgentFactory
from tests.live_server import site_env, site_shell
from tests.redis_helpers import redis_namespace
from tests.test_multiprocess import _spawn
from tests.test_websocket import connect


@pytest.fixture(autouse=True)
def _fresh_windows() -> Iterator[None]:
    cache.clear()  # the local-memory cache outlives a test; user ids repeat between tests
    yield
    cache.clear()


@pytest.fixture
def limits(settings: Any) -> Any:
    def set_limits(*, user: list[str] | None = None, runnable: list[str] | None = None) -> None:
        settings.AGENTOS = {**settings.AGENTOS, "RUN_RATE_LIMITS": {"USER": user or [], "RUNNABLE": runnable or []}}

    return set_limits


async def _run(asgi: Any, slug: str, token: str) -> httpx.Response:
    return await asgi.post(f"/api/agents/{slug}/runs", json={"message": "hi"}, headers=bearer(token))


@pytest.mark.django_db(transaction=True)
async def test_a_user_over_the_limit_gets_429_and_nothing_is_written(asgi, offline_agent, token, other_token, limits):
    limits(user=["2/min"])
    assert [(await _run(asgi, offline_agent.slug, token)).status_code for _ in range(2)] == [200, 200]
    r = await _run(asgi, offline_agent.slug, token)
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited" and r.json()["limit"] == "2/min"
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    assert await Run.objects.acount() == 2
    # Another user has a window of their own.
    assert (await _run(asgi, offline_agent.slug, other_token)).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_and_agnos_routes_are_limited_too(asgi, offline_agent, token, limits):
    limits(user=["1/hour"])
    assert (await _run(asgi, offline_agent.slug, token)).status_code == 200
    comm = await connect(offline_agent.slug, token=token)
    try:
        await comm.send_json_to({"type": "run", "message": "hello"})
        frame = await comm.receive_json_from(timeout=5)
        assert frame["event"] == "Error" and frame["code"] == "rate_limited" and frame["retry_after"] > 60
        await comm.send_json_to({"type": "run", "message": "still open?"})
        assert (await comm.receive_json_from(timeout=5))["code"] == "rate_limited"
    finally:
        await comm.disconnect()
    r = await asgi.post(f"/os/agents/{offline_agent.slug}/runs", data={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and "Retry-After" in r.headers


@pytest.mark.django_db(transaction=True)
async def test_a_runnable_limit_is_per_user_and_runnable_and_an_agent_may_set_its_own(
    asgi, offline_agent, token, limits
):
    limits(runnable=["1/min"])
    other = await sync_to_async(AgentFactory)(slug="other", model=offline_agent.model)
    assert (await _run(asgi, offline_agent.slug, token)).status_code == 200
    assert (await _run(asgi, offline_agent.slug, token)).status_code == 429
    assert (await _run(asgi, other.slug, token)).status_code == 200  # a window per runnable
    other.rate_limit = "3/min"
    await other.asave()  # clears the per-process cache of overrides
    assert [(await _run(asgi, other.slug, token)).status_code for _ in range(4)] == [200, 200, 200, 429]
    other.rate_limit = "off"
    await other.asave()
    assert (await _run(asgi, other.slug, token)).status_code == 200


@pytest.mark.django_db
def test_a_malformed_rate_is_refused_in_the_admin_and_the_api(staff_token, offline_agent):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    r = api.patch(f"/api/agents/{offline_agent.slug}/", {"rate_limit": "lots/min"}, format="json")
    assert r.status_code == 400 and "rate_limit" in r.json()
    r = api.patch(f"/api/agents/{offline_agent.slug}/", {"rate_limit": "5/min, 50/hour"}, format="json")
    assert r.status_code == 200 and r.json()["rate_limit"] == "5/min, 50/hour"


@pytest.mark.slow
def test_the_limit_holds_across_two_server_processes_on_redis(tmp_path, _scripted_server):
    with redis_namespace("ratelimits") as namespace:
        env = site_env(
            tmp_path / "shared.sqlite3",
            namespace,
            DJANGO_CACHE_URL=namespace.url,
            DJANGO_CACHE_KEY_PREFIX=namespace.prefix,
            AGENTOS_RUN_RATE_USER="3/min",
        )
        out = site_shell(
            env,
            "from django.core.management import call_command; call_command('migrate', verbosity=0); "
            "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
            "from agents_app.models import Agent, ModelConfig; "
            "u = User.objects.create_user('ada'); print(Token.objects.create(user=u).key); "
            "m = ModelConfig.objects.create(name='offline', provider='offline', model_id='offline-demo'); "
            "Agent.objects.create(slug='demo', name='Demo', model=m)",
        )
        token = out.strip().splitlines()[-1]
        procs: list[subprocess.Popen] = []
        try:
            ports = [_spawn(env, procs) for _ in range(2)]
            statuses = []
            for i in range(5):  # alternating between the two processes
                r = httpx.post(
                    f"http://127.0.0.1:{ports[i % 2]}/api/agents/demo/runs",
                    json={"message": "hi"},
                    headers=bearer(token),
                    timeout=10,
                )
                statuses.append(r.status_code)
            assert statuses == [200, 200, 200, 429, 429]
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


async def _other_users_session(agent: Any) -> str:
    from asgiref.sync import sync_to_async

    from sessions_app.models import Session
    from tests.factories import UserFactory

    def make() -> str:
        return str(Session.objects.create(user=UserFactory(), agent=agent).pk)

    return await sync_to_async(make)()


@pytest.mark.django_db(transaction=True)
async def test_a_start_that_does_not_happen_is_not_counted(asgi, offline_agent, token, limits):
    limits(user=["2/min"])
    # Another user's session: refused as unknown (an id nobody has would be created for the caller).
    theirs = await _other_users_session(offline_agent)
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi", "session_id": theirs}, headers=bearer(token)
    )
    assert r.status_code == 404  # refused: not counted
    assert [(await _run(asgi, offline_agent.slug, token)).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db
@pytest.mark.parametrize("rate", ["5/min/x", "5/s/", "5", "/min", "0/min", "5/fortnight1", "five/min"])
def test_a_malformed_rate_is_a_400_not_a_broken_agent(staff_token, offline_agent, rate):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    r = api.patch(f"/api/agents/{offline_agent.slug}/", {"rate_limit": rate}, format="json")
    assert r.status_code == 400 and "rate_limit" in r.json()


def test_a_malformed_site_rate_is_a_check_error(settings):
    from agents_app.checks import check_rate_limits

    settings.AGENTOS = {**settings.AGENTOS, "RUN_RATE_LIMITS": {"USER": ["30/min/x"], "RUNNABLE": []}}
    assert [e.id for e in check_rate_limits()] == ["agentos.E002"]
    settings.AGENTOS = {**settings.AGENTOS, "RUN_RATE_LIMITS": {"USER": ["30/min", "500/hour"], "RUNNABLE": []}}
    assert check_rate_limits() == []
