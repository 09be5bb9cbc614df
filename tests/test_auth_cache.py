"""The per-process cache of authenticated tokens (sessions_app.authcache): a token seen in the last
AUTH_CACHE_SECONDS costs no SQL statement to authenticate, over HTTP (REST and agno's routes) and the
websocket; a token revoked or deleted, or a user deactivated or deleted, in this process is refused
on the next request; expiry is checked against now on each request; the last use is written once a
minute from the cached row, without re-reading it; the token itself is never kept."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from agents_app import ws_auth
from agents_app.authentication import BearerOrTokenAuthentication
from sessions_app import authcache, tokens
from sessions_app.authcache import API, auth_cache_generation, auth_cache_get, auth_cache_put
from sessions_app.models import ApiToken
from sessions_app.tokens import TokenRevoked, digest_of, token_create, token_refresh, token_revoke
from tests.factories import AgentFactory, UserFactory

AUTH_TABLES = (ApiToken._meta.db_table, Token._meta.db_table, get_user_model()._meta.db_table)


def new_token(user: Any, **kwargs: Any) -> tuple[ApiToken, str]:
    kwargs.setdefault("name", "test")
    kwargs.setdefault("expires_at", timezone.now() + timedelta(days=1))
    return token_create(user=user, **kwargs)


def authenticate(key: str, method: str = "get") -> tuple[Any, Any]:
    request = Request(getattr(APIRequestFactory(), method)("/api/agents/", HTTP_AUTHORIZATION=f"Bearer {key}"))
    result = BearerOrTokenAuthentication().authenticate(request)
    assert result is not None
    return result


def auth_sql(client: Client, url: str) -> tuple[int, list[str]]:
    """One GET: its status and the statements it ran that read or write tokens or users."""
    with CaptureQueriesContext(connection) as captured:
        status = client.get(url).status_code
    return status, [q["sql"] for q in captured.captured_queries if any(t in q["sql"] for t in AUTH_TABLES)]


@pytest.fixture
def keys(user: Any, token: str) -> dict[str, str]:
    """A DRF token and a scoped API token of the same user."""
    return {"drf": token, "api": new_token(user)[1]}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["drf", "api"])
def test_a_second_request_costs_no_query_to_authenticate(keys, kind):
    with CaptureQueriesContext(connection) as first:
        user, _ = authenticate(keys[kind])
    # The row with its user; the API token's first use is written too.
    assert [q["sql"].split()[0] for q in first.captured_queries] == (
        ["SELECT"] if kind == "drf" else ["SELECT", "UPDATE"]
    )
    with CaptureQueriesContext(connection) as second:
        again, auth = authenticate(keys[kind])
    assert second.captured_queries == []
    assert again.pk == user.pk and again.is_active
    assert isinstance(auth, Token if kind == "drf" else ApiToken)
    # Each request gets its own copies: what one sets on its user does not reach the next.
    again._agentos_group_ids = frozenset({1})
    third, _ = authenticate(keys[kind])
    assert third is not again and not hasattr(third, "_agentos_group_ids")


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["drf", "api"])
def test_whole_requests_on_rest_and_agno_routes(keys, kind, two_agents):
    client = Client(headers={"Authorization": f"Bearer {keys[kind]}"})
    status, first = auth_sql(client, "/api/agents/")
    assert status == 200 and first  # the token with its user (and the API token's first use)
    for url in ("/api/agents/", "/os/agents"):
        status, again = auth_sql(client, url)
        assert status == 200 and again == [], (url, again)


@pytest.fixture
def two_agents(db: Any) -> tuple[Any, Any]:
    return AgentFactory(slug="mine", name="Mine"), AgentFactory(slug="theirs", name="Theirs")


@pytest.mark.django_db
def test_without_the_cache_each_request_reads_the_token(keys, settings):
    settings.AGENTOS = {**settings.AGENTOS, "AUTH_CACHE_SECONDS": 0}
    for key in keys.values():
        authenticate(key)
        for _ in range(2):
            with CaptureQueriesContext(connection) as captured:
                authenticate(key)
            assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT"]
    assert authcache._entries == {}


# ---- changes in this process apply at once ------------------------------------------------------------


@pytest.mark.django_db
def test_a_revoked_token_is_refused_on_the_next_request(user, two_agents):
    row, secret = new_token(user)
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    assert client.get("/api/agents/").status_code == 200
    # Revoked over the API, by itself (token_revoke: a queryset UPDATE, no signal).
    assert client.delete(f"/api/tokens/{row.pk}/").status_code == 204
    r = client.get("/api/agents/")
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    # Revoked by saving the row (the admin's form, a shell).
    row, secret = new_token(user)
    authenticate(secret)
    row.revoked_at = timezone.now()
    row.save()
    with pytest.raises(AuthenticationFailed) as caught:
        authenticate(secret)
    assert caught.value.get_codes() == "token_revoked"
    # The admin's action: token_revoke too.
    row, secret = new_token(user)
    authenticate(secret)
    token_revoke(token=ApiToken.objects.get(pk=row.pk))
    with pytest.raises(AuthenticationFailed):
        authenticate(secret)


@pytest.mark.django_db
def test_a_deleted_token_is_refused_on_the_next_request(user, keys):
    for key in keys.values():
        authenticate(key)
    Token.objects.filter(user=user).delete()
    ApiToken.objects.filter(user=user).delete()
    for key in keys.values():
        with pytest.raises(AuthenticationFailed) as caught:
            authenticate(key)
        assert caught.value.get_codes() == "authentication_failed"


@pytest.mark.django_db
def test_a_deactivated_or_deleted_user_is_refused_on_the_next_request(user, keys):
    for key in keys.values():
        authenticate(key)
    user.is_active = False
    user.save()
    for key in keys.values():
        with pytest.raises(AuthenticationFailed):
            authenticate(key)
    user.is_active = True
    user.save()
    for key in keys.values():
        assert authenticate(key)[0].pk == user.pk
    user.delete()
    for key in keys.values():
        with pytest.raises(AuthenticationFailed):
            authenticate(key)


@pytest.mark.django_db
def test_another_users_save_keeps_the_entries(user, keys):
    for key in keys.values():
        authenticate(key)
    UserFactory(username="bob").save()
    with CaptureQueriesContext(connection) as captured:
        for key in keys.values():
            authenticate(key)
    assert captured.captured_queries == []


# ---- time -------------------------------------------------------------------------------------------------


def later(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> Any:
    """Move the clock the token checks read (expiry, last use) forward; the cache's own clock stays."""
    now = timezone.now() + delta
    monkeypatch.setattr(tokens, "timezone", SimpleNamespace(now=lambda: now))
    return now


@pytest.mark.django_db
def test_an_expired_token_is_refused_even_when_cached(user, monkeypatch):
    _, secret = new_token(user, expires_at=timezone.now() + timedelta(hours=1))
    authenticate(secret)
    later(monkeypatch, timedelta(hours=2))
    with CaptureQueriesContext(connection) as captured, pytest.raises(AuthenticationFailed) as caught:
        authenticate(secret)
    assert caught.value.get_codes() == "token_expired" and captured.captured_queries == []


@pytest.mark.django_db
def test_the_last_use_is_written_once_a_minute_from_the_cached_row(user, monkeypatch):
    row, secret = new_token(user)
    authenticate(secret)
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as captured:
        for _ in range(3):
            authenticate(secret)
    assert captured.captured_queries == [] and ApiToken.objects.get(pk=row.pk).last_used_at == first
    # A minute later: one UPDATE, no SELECT (the cached row says when it was last written).
    now = later(monkeypatch, timedelta(seconds=61))
    with CaptureQueriesContext(connection) as captured:
        authenticate(secret)
        authenticate(secret)
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["UPDATE"]
    assert ApiToken.objects.get(pk=row.pk).last_used_at == now


@pytest.mark.django_db
def test_a_change_made_elsewhere_is_seen_once_the_entry_is_older_than_the_setting(user, monkeypatch, settings):
    settings.AGENTOS = {**settings.AGENTOS, "AUTH_CACHE_SECONDS": 5}
    row, secret = new_token(user)
    authenticate(secret)
    # Another process revokes it: no signal here. The cached row serves until it is 5 seconds old.
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=timezone.now())
    authenticate(secret)
    clock = authcache.time.monotonic() + 5.01
    monkeypatch.setattr(authcache, "time", SimpleNamespace(monotonic=lambda: clock))
    with pytest.raises(AuthenticationFailed) as caught:
        authenticate(secret)
    assert caught.value.get_codes() == "token_revoked"


# ---- the cache itself ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_token_is_not_kept_in_clear(keys):
    for key in keys.values():
        authenticate(key)
    assert len(authcache._entries) == 2
    kept = repr(list(authcache._entries))
    for entry in authcache._entries.values():
        kept += repr(vars(entry.row)) + repr(vars(entry.row._state.fields_cache["user"]))
    for key in keys.values():
        assert key not in kept and key[-20:] not in kept
    assert digest_of(keys["api"]) in kept  # what it is keyed by


@pytest.mark.django_db
def test_a_row_read_before_a_change_is_not_cached_after_it(user):
    row, _ = new_token(user)
    generation = auth_cache_generation()
    loaded = ApiToken.objects.select_related("user").get(pk=row.pk)
    token_revoke(token=row)  # meanwhile, in another thread
    auth_cache_put(API, row.digest, loaded, generation)
    assert auth_cache_get(API, row.digest) is None


@pytest.mark.django_db
def test_the_cache_is_bounded_least_recently_used_first(user, monkeypatch):
    monkeypatch.setattr(authcache, "MAX_ENTRIES", 2)
    secrets = [new_token(user, name=f"t{i}")[1] for i in range(3)]
    authenticate(secrets[0])
    authenticate(secrets[1])
    authenticate(secrets[0])  # used again: the least recently used is now the second
    authenticate(secrets[2])
    assert set(authcache._entries) == {(API, digest_of(secrets[0])), (API, digest_of(secrets[2]))}
    assert sum(len(keys) for keys in authcache._by_user.values()) == 2


# ---- websockets -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_websocket_authenticates_from_the_cache(user, keys):
    authenticate_ws = ws_auth._authenticate.func  # the function database_sync_to_async runs
    for kind, key in keys.items():
        authenticate_ws(key)
        with CaptureQueriesContext(connection) as captured:
            found, api_token = authenticate_ws(key)
        assert captured.captured_queries == [] and found.pk == user.pk
        assert isinstance(api_token, ApiToken) == (kind == "api")
    user.is_active = False
    user.save()
    for key in keys.values():
        assert not authenticate_ws(key)[0].is_authenticated


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_with_a_token_revoked_in_this_process_is_refused(user, two_agents):
    from agentos_site.asgi import application

    row, secret = await sync_to_async(new_token)(user)

    def ws() -> WebsocketCommunicator:
        return WebsocketCommunicator(
            application,
            "/ws/agents/mine/",
            headers=[(b"origin", b"http://testserver")],
            subprotocols=["agentos", f"token.{secret}"],
        )

    comm = ws()
    assert (await comm.connect(timeout=5))[0]
    await comm.disconnect()
    await sync_to_async(token_revoke)(token=row)
    assert await ws().connect(timeout=5) == (False, 4401)


@pytest.mark.django_db
def test_an_open_websockets_check_of_its_token_reads_the_cache(user):
    row, secret = new_token(user)
    _, api_token = authenticate(secret)
    with CaptureQueriesContext(connection) as captured:
        fresh = token_refresh(api_token)
    assert captured.captured_queries == [] and fresh.pk == row.pk and fresh is not api_token
    token_revoke(token=row)
    with pytest.raises(TokenRevoked):
        token_refresh(api_token)


@pytest.mark.django_db
def test_a_drf_token_deleted_in_the_admin_is_refused_on_the_next_request(client, staff_user, user, token):
    from rest_framework.authtoken.models import TokenProxy

    authenticate(token)
    client.force_login(staff_user)
    r = client.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not TokenProxy.objects.exists()
    with pytest.raises(AuthenticationFailed):
        authenticate(token)
