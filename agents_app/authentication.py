"""Token authentication that accepts `Authorization: Bearer <token>` as well as DRF's `Token <token>`.

Bearer is what agno's clients and most HTTP tooling send. Two kinds of token travel in that header:

* scoped API tokens (`agos_…`, sessions_app.tokens; docs/api.md#api-tokens): stored hashed, named,
  expiring, revocable, optionally limited to some agents, teams and workflows (the edges read that
  from `request.auth` through `sessions_app.access.allowed_for`) and to reads, which is enforced
  here: a read-only token authenticates no unsafe method (403 `token_read_only`), except on views
  that say they take care of it (`read_only_token_methods`: a token revoking itself);
* DRF's authtoken rows (one per user, from `/api/auth/token/`), as before.

Both are looked up through the per-process cache of sessions_app.authcache: a token seen in the last
AUTH_CACHE_SECONDS costs no SQL statement (expiry, revocation and the user's being active are still
checked on each request).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS

from sessions_app.errors import AuthenticationError
from sessions_app.models import ApiToken
from sessions_app.tokens import TokenReadOnly, drf_token_get, is_api_token, token_authenticate


class BearerOrTokenAuthentication(TokenAuthentication):
    keywords = (b"bearer", b"token")

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Bearer <token>'.")
        try:
            token = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the token has invalid characters.") from None
        user, credentials = self.authenticate_credentials(token)
        if isinstance(credentials, ApiToken) and credentials.read_only and request.method not in SAFE_METHODS:
            view = (getattr(request, "parser_context", None) or {}).get("view")
            if request.method not in getattr(view, "read_only_token_methods", ()):
                error = TokenReadOnly(
                    "This API token is read-only: it may not start runs or change anything "
                    f"({request.method} {request.path})."
                )
                raise exceptions.PermissionDenied(error.detail, code=error.code)
        return user, credentials

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if not is_api_token(key):
            # DRF's TokenAuthentication.authenticate_credentials, its answers included, with the cache.
            token = drf_token_get(key)
            if token is None:
                raise exceptions.AuthenticationFailed(_("Invalid token."))
            if not token.user.is_active:
                raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
            return token.user, token
        try:
            token = token_authenticate(key)
        except AuthenticationError as exc:
            # DRF's own 401, so the answer carries its WWW-Authenticate header; `code` from the error map.
            raise exceptions.AuthenticationFailed(exc.detail, code=exc.code) from None
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"
