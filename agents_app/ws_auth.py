"""Websocket authentication by API token, for clients that have no Django session (mobile apps,
backends). Browsers on the site itself just use their session cookie (AuthMiddlewareStack).

The token travels in the `Sec-WebSocket-Protocol` header, the one header a browser's `WebSocket`
lets a page set: offer the subprotocols `agentos` and `token.<key>`; the server answers with
`agentos`, never echoing the token. `?token=<key>` works too, for clients that cannot set
subprotocols, but URLs end up in logs, so prefer the header. A token that is given but wrong
makes the connection anonymous (refused), even when a session cookie came along.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

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
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from an API token when the client sent one; otherwise leaves the
    session user that AuthMiddlewareStack put there."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_scope(scope)
        if key is not None:
            scope = dict(scope, user=await _user_for_token(key) if key else AnonymousUser())
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
