"""Django's standard middleware, run in the event loop instead of a worker thread.

Under ASGI, Django runs every `MiddlewareMixin` hook through `sync_to_async`: with the seven
standard middleware that is about a dozen thread hops per request, a large share of the serving
cost of an API call. These hooks are pure CPU work (headers, cookies, lazy objects) except in the
cases checked below, which still take the thread hop. Each class is a drop-in replacement for the
Django class of the same name; in sync (WSGI, test client) mode they behave exactly as Django's.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security


class _InlineMixin:
    """Run process_request/process_response in the event loop (they never block)."""

    async def __acall__(self, request: Any) -> Any:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self._response_may_block(request, response):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response

    def _response_may_block(self, request: Any, response: Any) -> bool:
        return False


class SecurityMiddleware(_InlineMixin, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InlineMixin, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(_InlineMixin, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(_InlineMixin, auth.AuthenticationMiddleware):
    """Only installs lazy `request.user`/`request.auser`; the database is hit when they are used."""


class SessionMiddleware(_InlineMixin, sessions.SessionMiddleware):
    """Creating the lazy session store is pure; saving it is not, so a touched session still saves
    in a worker thread."""

    def _response_may_block(self, request: Any, response: Any) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.accessed or session.modified)


class MessageMiddleware(_InlineMixin, messages.MessageMiddleware):
    """Storing messages may write the session; with nothing added or read it is pure."""

    def _response_may_block(self, request: Any, response: Any) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class CsrfViewMiddleware(_InlineMixin, csrf.CsrfViewMiddleware):
    """Cookie-based CSRF is pure CPU. With CSRF_USE_SESSIONS the token lives in the session (a
    database read), so that configuration keeps Django's threaded behaviour."""

    async def __acall__(self, request: Any) -> Any:
        if settings.CSRF_USE_SESSIONS:
            return await csrf.CsrfViewMiddleware.__acall__(self, request)
        return await super().__acall__(request)
