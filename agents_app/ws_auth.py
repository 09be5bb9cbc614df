"""Websocket authentication by API token, for clients that have no Django session (mobile apps,
backends). Browsers on the site itself just use their session cookie (AuthMiddlewareStack).

The token travels in the `Sec-WebSocket-Protocol` header, the one header a browser's `WebSocket`
lets a page set: offer the subprotocols `agentos` and `token.<key>`; the server answers with
`agentos`, never echoing the token. `?token=<key>` works too, for clients that cannot set
subprotocols, but URLs end up in logs, so prefer the header. A token that is given but wrong
(unknown, expired, revoked) makes the connection anonymous (refused), even when a session cookie
came along.

Both kinds of token work, as over HTTP (agents_app.authentication): DRF's, and scoped API tokens
(sessions_app.tokens), which the middleware also puts in `scope["api_token"]` for the consumer to
apply their limits (runnables, read-only) and to check again while the socket stays open.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from sessions_app.errors import AuthenticationError
from sessions_app.models import ApiToken
from sessions_app.tokens import drf_token_get, is_api_token, token_authenticate

SUBPROTOCOL = "agentos"
TOKEN_SUBPROTOCOL_PREFIX = "token."


def token_from_scope(scope: dict[str, Any]) -> str | None:
    for protocol in scope.get("subprotocols") or ():
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


@database_sync_to_async
def _authenticate(key: str) -> tuple[Any, ApiToken | None]:
    """The user a token authenticates (AnonymousUser when none) and the API token, if it is one;
    through the per-process cache of sessions_app.authcache, as over HTTP."""
    if is_api_token(key):
        try:
            api_token = token_authenticate(key)
        except AuthenticationError:
            return AnonymousUser(), None
        return api_token.user, api_token
    token = drf_token_get(key)
    if token is None or not token.user.is_active:
        return AnonymousUser(), None
    return token.user, None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from an API token when the client sent one; otherwise leaves the
    session user that AuthMiddlewareStack put there."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_scope(scope)
        if key is not None:
            user, api_token = await _authenticate(key) if key else (AnonymousUser(), None)
            scope = dict(scope, user=user, api_token=api_token)
        return await super().__call__(scope, receive, send)


class _OriginOrNoneValidator(OriginValidator):
    def valid_origin(self, parsed_origin: Any) -> bool:
        # Browsers always send Origin on a websocket handshake, so a cross-site page can never omit
        # it; clients that omit it (apps, backends) are not browsers and carry their own credentials.
        return parsed_origin is None or self.validate_origin(parsed_origin)


def AllowedHostsOriginValidator(application: Any) -> OriginValidator:
    """Channels' AllowedHostsOriginValidator (refuse origins outside ALLOWED_HOSTS, i.e. cross-site
    pages riding on a session cookie), except that a handshake without an Origin header is let
    through to authentication: Channels refuses those, which would shut out every non-browser client."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return _OriginOrNoneValidator(application, allowed_hosts)
