"""Shared fixtures: users and tokens, the scripted OpenAI-compatible server on a loopback port,
agents wired to it, and an HTTP client that drives the real ASGI application."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from agents_app.cache import agent_cache_clear
from agents_app.models import Agent, ModelConfig
from agents_app.testing.scripted_server import ScriptedModelServer
from agents_app.versions import versions_cache_clear
from sessions_app.authcache import auth_cache_clear
from tests.factories import AgentFactory, ModelConfigFactory, UserFactory
from tests.redis_helpers import SESSION_PREFIX, RedisNamespace, configured_redis_url, delete_keys, redis_namespace


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Under pytest-xdist each worker's test database gets pytest-django's suffix (_gw0, _gw1).

    On SQLite, a test database in a file (WAL, busy timeout), not Django's default shared-cache
    in-memory one: there, a thread writing locks whole tables and another thread's reader or writer
    fails at once with "database table is locked" (no busy timeout applies). The engine's database
    threads and the embedded Celery worker are such threads, so that made tests flaky; a file
    behaves as the product's own SQLite database does."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


def _redis_layer_urls(layers: dict[str, Any]) -> set[str]:
    """The Redis URLs of the channels_redis layers among `layers`."""
    urls = set()
    for layer in layers.values():
        if layer.get("BACKEND", "").startswith("channels_redis."):
            for host in layer.get("CONFIG", {}).get("hosts", []):
                address = host.get("address") if isinstance(host, dict) else host
                if isinstance(address, str):
                    urls.add(address)
    return urls


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_of_this_run_only() -> Iterator[None]:
    """The site's own Redis channel layer (a suite run with `REDIS_URL` set, as CI's PostgreSQL pass)
    writes its keys under this run's prefix, here and in the server processes tests start (they
    inherit `CHANNEL_LAYER_PREFIX`), not under the default `asgi` a developer's own site uses; at the
    end, whatever is left under the run's prefix is deleted (tests/redis_helpers.py)."""
    from django.conf import settings
    from django.test import override_settings

    prefix = f"{SESSION_PREFIX}site:"
    urls = _redis_layer_urls(settings.CHANNEL_LAYERS)
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for layer in layers.values():
        if layer.get("BACKEND", "").startswith("channels_redis."):
            layer.setdefault("CONFIG", {})["prefix"] = prefix
    inherited = os.environ.get("CHANNEL_LAYER_PREFIX")
    os.environ["CHANNEL_LAYER_PREFIX"] = prefix
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            yield
    finally:
        if inherited is None:
            os.environ.pop("CHANNEL_LAYER_PREFIX", None)
        else:
            os.environ["CHANNEL_LAYER_PREFIX"] = inherited
        import redis

        for url in (urls | {configured_redis_url()}) - {""}:
            with contextlib.suppress(redis.RedisError):  # unreachable: the tests that need it said so
                delete_keys(url, SESSION_PREFIX)


@pytest.fixture(scope="session", autouse=True)
def _media_root_of_this_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Files the tests upload (images sent with runs) go to a temporary MEDIA_ROOT, never the
    checkout's `media/`."""
    from django.test import override_settings

    with override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("media"))):
        yield


@pytest.fixture
def isolated_redis() -> Iterator[RedisNamespace]:
    """The test Redis (skip without one, fail in CI) and a key prefix of this test's own, whose keys
    are deleted when it ends."""
    with redis_namespace("t") as namespace:
        yield namespace


@pytest.fixture(scope="session")
def _scripted_server() -> Iterator[ScriptedModelServer]:
    server = ScriptedModelServer().start()
    yield server
    server.stop()


@pytest.fixture
def scripted_model(_scripted_server: ScriptedModelServer) -> Iterator[ScriptedModelServer]:
    _scripted_server.reset()
    yield _scripted_server
    _scripted_server.reset()


@pytest.fixture(autouse=True)
def _fresh_agent_cache() -> Iterator[None]:
    # Agents (and their latest configuration versions) and authenticated tokens are cached per
    # process; tests create and change them freely.
    agent_cache_clear()
    versions_cache_clear()
    auth_cache_clear()
    yield
    agent_cache_clear()
    versions_cache_clear()
    auth_cache_clear()


@pytest.fixture
def user(db: Any) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db: Any) -> Any:
    return UserFactory(username="mallory")


@pytest.fixture
def staff_user(db: Any) -> Any:
    return UserFactory(username="staff", is_staff=True, is_superuser=True)


@pytest.fixture
def token(user: Any) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def other_token(other_user: Any) -> str:
    return Token.objects.create(user=other_user).key


@pytest.fixture
def staff_token(staff_user: Any) -> str:
    return Token.objects.create(user=staff_user).key


@pytest.fixture
def openai_model(db: Any, scripted_model: ScriptedModelServer) -> ModelConfig:
    return ModelConfigFactory(
        name="scripted",
        provider=ModelConfig.Provider.OPENAI,
        base_url=scripted_model.base_url,
        model_id="scripted-model",
        api_key="sk-test-secret-key",
        timeout_seconds=5.0,
        max_retries=0,
    )


@pytest.fixture
def agent(openai_model: ModelConfig) -> Agent:
    return AgentFactory(slug="helper", name="Helper", model=openai_model, tools=["calculator", "current_time"])


@pytest.fixture
def offline_agent(db: Any) -> Agent:
    return AgentFactory(slug="offline", name="Offline", tools=["calculator", "current_time", "text_stats"])


@pytest.fixture
async def asgi() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client wired to the real ASGI application (middleware, routing, async views)."""
    from agentos_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Server-Sent Events as (event name, data) pairs, checking each frame's shape (an `id:` line,
    where there is one, must be the event's `event_index`)."""
    frames = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        event_id = lines.pop(0)[len("id: ") :] if lines[0].startswith("id: ") else None
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][len("data: ") :])
        assert event_id is None or event_id == str(data["event_index"]), block
        frames.append((lines[0][len("event: ") :], data))
    return frames


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session", autouse=True)
def _close_engine_db_threads(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    # The engine's database threads keep their connections; close them before the test database
    # is dropped (PostgreSQL refuses to drop a database that has sessions).
    yield
    from agents_app.embedded_worker import stop_embedded_worker
    from agents_app.runtime import liveness_stop
    from sessions_app.db import db_threads_close_connections

    liveness_stop()  # this process's heartbeat thread (runtimes on a shared channel layer start it)

    # The embedded Celery worker (background hooks in embedded mode) and its sweep thread, too:
    # otherwise they touch the database after it is gone.
    stop_embedded_worker()
    db_threads_close_connections()
    # And asgiref's thread for `sync_to_async` calls made outside `async_to_sync` (async tests'
    # own database calls, Django's async ORM): nothing closes its connection otherwise.
    from asgiref.sync import SyncToAsync
    from django.db import connections

    with contextlib.suppress(Exception):
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(5)


def without_error_code(body: dict) -> dict:
    """A validation error's field errors, after checking the `detail` and `code` every error body has."""
    assert body["code"] == "invalid" and isinstance(body["detail"], str) and body["detail"], body
    return {k: v for k, v in body.items() if k not in ("detail", "code")}


# agno's bookkeeping events around each model call and after a streamed answer (agents_app/events.py):
# tests about other events' order compare without them.
BOOKKEEPING_EVENTS = frozenset(
    prefix + name
    for prefix in ("", "Team")
    for name in ("ModelRequestStarted", "ModelRequestCompleted", "RunContentCompleted")
)


def without_bookkeeping(names: list[str]) -> list[str]:
    """Event names without ModelRequestStarted/Completed and RunContentCompleted (and Team…)."""
    return [name for name in names if name not in BOOKKEEPING_EVENTS]
