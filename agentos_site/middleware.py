"""Django's standard middleware, run in the event loop instead of a worker thread.

Under ASGI, Django runs every `MiddlewareMixin` hook through `sync_to_async`: with the seven
standard middleware that is about a dozen thread hops per request, a large share of the serving
cost of an API call. These hooks are pure CPU work (headers, cookies, lazy objects) except in the
cases checked below, which still take the thread hop. Each class is a drop-in replacement for the
Django class of the same name; in sync (WSGI, test client) mode they behave exactly as Django's.

Also the site's own request-id middleware, written the same way (async, no thread hop).
"""

from __future__ import annotations

import os
import re
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security

from sessions_app import logcontext

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it looks like one (a UUID, a proxy's or a load balancer's token):
# it is written into every log line of the request, so nothing that could forge a line gets in.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")


class RequestIdMiddleware:
    """Gives each request an id: the `X-Request-ID` header a proxy or client sent (when it looks
    like an id), else a new one (32 hex digits). It is bound for logging (every line written while
    the request is served carries it as `request_id`, sessions_app.logcontext; so do the lines of
    a run the request starts), kept as `request.request_id`, and sent back in the response's
    `X-Request-ID` header. Async under ASGI: no thread hop, a few microseconds per request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def request_id(request: Any) -> str:
        incoming = request.META.get("HTTP_X_REQUEST_ID")  # not request.headers: that builds a dict
        if incoming and _REQUEST_ID_RE.fullmatch(incoming):
            return incoming
        return os.urandom(16).hex()  # what uuid4().hex is made of, at a third of the cost

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request.request_id = request_id = self.request_id(request)
        logcontext.set_request_id(request_id)
        try:
            response = self.get_response(request)
        except BaseException:
            logcontext.clear_request_id()
            raise
        response[REQUEST_ID_HEADER] = request_id
        # Django logs a failed request ("Not Found: …") after the middleware returns; a WSGI thread
        # closes the response once it is sent, and then serves the next request in the same context.
        response._resource_closers.append(logcontext.clear_request_id)
        return response

    async def __acall__(self, request: Any) -> Any:
        request.request_id = request_id = self.request_id(request)
        # Not reset: under ASGI each request is served in a task of its own, which ends with it, and
        # the id stays bound while the response is sent (a streamed body, the server's access line).
        logcontext.set_request_id(request_id)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


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
