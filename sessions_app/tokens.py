"""Scoped API tokens (sessions_app.models.ApiToken): create, authenticate, revoke.
docs/adr/0003-scoped-api-tokens.md says why this follows django-rest-knox's design without using
the package.

A token is `agos_` + 12 hex digits (the prefix: shown in lists, and the indexed key its row is
found by) + 43 characters of `secrets.token_urlsafe(32)` (256 random bits). Only the prefix and a
SHA-256 digest of the whole token are stored: the token itself is shown once, when it is created.
A digest of a 256-bit random value needs no slow, salted password hash (nothing to guess from a
stolen digest), so checking a token costs a hash of 60 bytes and, unless this process saw it in the
last AUTH_CACHE_SECONDS (sessions_app.authcache), one indexed SELECT (the row with its user, as DRF's
own tokens do); its last use is written at most once per API_TOKEN_LAST_USED_SECONDS (one
conditional UPDATE). DRF's own tokens are looked up through the same cache (`drf_token_get`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from sessions_app.authcache import (
    API,
    DRF,
    auth_cache_drop,
    auth_cache_generation,
    auth_cache_get,
    auth_cache_note_use,
    auth_cache_put,
)
from sessions_app.conf import agentos_settings
from sessions_app.errors import AuthenticationError, ConflictError, ForbiddenError
from sessions_app.models import ApiToken

TOKEN_PREFIX = "agos_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 12
_TOKEN_RE = re.compile(r"agos_[0-9a-f]{12}[A-Za-z0-9_-]{43}")


class TokenInvalid(AuthenticationError):
    code = "authentication_failed"
    default_detail = "Invalid token."


class TokenExpired(AuthenticationError):
    code = "token_expired"
    default_detail = "This API token has expired."


class TokenRevoked(AuthenticationError):
    code = "token_revoked"
    default_detail = "This API token has been revoked."


class TokenReadOnly(ForbiddenError):
    code = "token_read_only"
    default_detail = "This API token is read-only."


class TokenCannotManageTokens(ForbiddenError):
    code = "token_cannot_manage_tokens"
    default_detail = (
        "An API token cannot create tokens or revoke other tokens (it may revoke itself); sign in, or use a "
        "token from /api/auth/token/."
    )


class TokenLimitReached(ConflictError):
    code = "token_limit_reached"
    default_detail = "You have as many live API tokens as allowed; revoke one first."


def is_api_token(key: str) -> bool:
    """Whether `key` is one of these tokens by its form (not whether it exists): anything else sent
    as a token is a DRF token, looked up as before."""
    return key.startswith(TOKEN_PREFIX)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- reads ------------------------------------------------------------------------------------------


def token_list_for_user(*, user: Any) -> QuerySet[ApiToken]:
    """The user's tokens that are not revoked (expired ones too: their owner sees why they fail), newest first."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


def _live_count(user: Any, now: datetime) -> int:
    return token_list_for_user(user=user).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).count()


# ---- writes ------------------------------------------------------------------------------------------


def default_expiry(now: datetime | None = None) -> datetime | None:
    """When a token created without an expiry expires (API_TOKEN_DEFAULT_DAYS; 0 or None: never)."""
    days = agentos_settings.API_TOKEN_DEFAULT_DAYS
    if not days:
        return None
    return (now or timezone.now()) + timedelta(days=float(days))


def latest_expiry(now: datetime | None = None) -> datetime | None:
    """The latest expiry a token may have (API_TOKEN_MAX_DAYS; 0 or None: no limit, "never" allowed)."""
    days = agentos_settings.API_TOKEN_MAX_DAYS
    if not days:
        return None
    return (now or timezone.now()) + timedelta(days=float(days))


def token_create(
    *,
    user: Any,
    name: str,
    read_only: bool = False,
    agents: Iterable[str] = (),
    teams: Iterable[str] = (),
    workflows: Iterable[str] = (),
    expires_at: datetime | None,
) -> tuple[ApiToken, str]:
    """A new token of `user` and its secret, which is not stored: show it once. The caller has
    checked the slugs and the expiry (the API's and the admin's validation); raises
    TokenLimitReached when the user has API_TOKENS_PER_USER live tokens already."""
    now = timezone.now()
    limit = agentos_settings.API_TOKENS_PER_USER
    if limit and _live_count(user, now) >= int(limit):
        raise TokenLimitReached()
    token = ApiToken(
        user=user,
        name=name,
        read_only=read_only,
        agents=sorted(set(agents)),
        teams=sorted(set(teams)),
        workflows=sorted(set(workflows)),
        expires_at=expires_at,
    )
    return token, token_issue(token)


def token_issue(token: ApiToken) -> str:
    """Draw the secret of a new, unsaved token (the admin's add form fills the other fields), store
    its prefix and digest with the row, and return it: it is not stored, show it once."""
    for _ in range(3):  # two prefixes of 48 random bits are the same once in 2**48: draw again then
        secret = f"{TOKEN_PREFIX}{secrets.token_hex(6)}{secrets.token_urlsafe(32)}"
        token.prefix, token.digest = secret[:PREFIX_LENGTH], digest_of(secret)
        try:
            with transaction.atomic():
                token.save(force_insert=True)
        except IntegrityError:
            if ApiToken.objects.filter(prefix=token.prefix).exists():
                continue
            raise
        return secret
    raise RuntimeError("Could not draw a fresh token prefix three times in a row.")


def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token (idempotent): it stops working at once in this process, and in the others
    within AUTH_CACHE_SECONDS (their cached copy of it); the row stays."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=token.revoked_at)
    # A queryset UPDATE sends no signal (sessions_app.apps drops the saved and deleted ones).
    auth_cache_drop(API, token.digest)
    return token


# ---- authentication ------------------------------------------------------------------------------------


def token_authenticate(key: str) -> ApiToken:
    """The live token `key` is (with its user), its last use recorded; raises TokenInvalid (unknown,
    malformed, or its user is inactive), TokenExpired or TokenRevoked. One SELECT unless the token is
    in this process's cache (sessions_app.authcache), plus one UPDATE at most once per
    API_TOKEN_LAST_USED_SECONDS per token."""
    if not _TOKEN_RE.fullmatch(key):
        raise TokenInvalid()
    digest = digest_of(key)
    # A hit is found by the digest of the whole token, i.e. the row's digest: nothing to compare.
    token = auth_cache_get(API, digest)
    if token is None:
        generation = auth_cache_generation()
        try:
            # get(), not first(): no ORDER BY to compile (the prefix is unique); most of this function's
            # CPU is the ORM building the query.
            token = ApiToken.objects.select_related("user").get(prefix=key[:PREFIX_LENGTH])
        except ApiToken.DoesNotExist:
            raise TokenInvalid() from None
        # Compared in constant time, so the answer's timing tells nothing about the digest.
        if not hmac.compare_digest(token.digest, digest):
            raise TokenInvalid()
        # Cached as loaded, revoked or expired too: those are checked on each use.
        auth_cache_put(API, digest, token, generation)
    _check_cached(token)
    return token


def _check_cached(token: ApiToken) -> None:
    """token_check, and the cached row told when the token's last use was written (if it was)."""
    last_used_at = token.last_used_at
    token_check(token)
    if token.last_used_at != last_used_at:
        auth_cache_note_use(API, token.digest, token.last_used_at)


def drf_token_get(key: str) -> Any | None:
    """DRF's authtoken row `key` is, with its user (None: no such token), from this process's cache
    when it holds it (sessions_app.authcache), else one SELECT. The caller checks `user.is_active`."""
    from rest_framework.authtoken.models import Token

    digest = digest_of(key)
    token = auth_cache_get(DRF, digest)
    if token is not None:
        token.key = key  # not cached: the row's key is the token itself
        return token
    generation = auth_cache_generation()
    try:
        token = Token.objects.select_related("user").get(key=key)
    except Token.DoesNotExist:
        return None
    auth_cache_put(DRF, digest, token, generation, blank=("key",))
    return token


def token_check(token: ApiToken, *, now: datetime | None = None) -> None:
    """Raise if the token (as loaded) may not be used now; else record its use (throttled)."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        raise TokenRevoked()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenExpired()
    if not token.user.is_active:
        raise TokenInvalid("User inactive or deleted.")
    token_touch(token, now=now)


def token_touch(token: ApiToken, *, now: datetime) -> bool:
    """Record the token's use, unless it was recorded less than API_TOKEN_LAST_USED_SECONDS ago
    (by this or any process: the UPDATE is conditional). Whether it wrote."""
    every = timedelta(seconds=float(agentos_settings.API_TOKEN_LAST_USED_SECONDS))
    if token.last_used_at is not None and now - token.last_used_at < every:
        return False
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - every)
    updated = ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
    return bool(updated)


def token_refresh(token: ApiToken) -> ApiToken:
    """The token as stored now, checked again (an open websocket does this every
    API_TOKEN_LAST_USED_SECONDS, so a revoked token's socket stops starting runs): from this
    process's cache when it holds it (a change made here has dropped it; one made by another
    process is seen within AUTH_CACHE_SECONDS), else one SELECT."""
    fresh = auth_cache_get(API, token.digest)
    if fresh is None:
        generation = auth_cache_generation()
        fresh = ApiToken.objects.select_related("user").filter(pk=token.pk).first()
        if fresh is None:
            raise TokenRevoked()
        auth_cache_put(API, fresh.digest, fresh, generation)
    _check_cached(fresh)
    return fresh
