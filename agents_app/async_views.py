"""An async DRF APIView: DRF's parsing, auth, permissions and error format, on an async handler.

DRF's own views are sync; under ASGI a sync view holds a worker thread for the whole model call,
and all sync views share one thread, so concurrent runs would queue behind each other. Here the
handler is a coroutine; the sync parts (authentication, which may query the database) run in one
thread hop that the handler combines with its own database work via `in_thread`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpResponse, HttpResponseBase
from rest_framework.response import Response
from rest_framework.views import APIView


class AsyncAPIView(APIView):
    """Subclasses define `async def post(self, request, ...)` and, optionally, a sync
    `prepare_post(self, request, ...)`. DRF's authentication, permission and throttle checks and
    `prepare_<method>` run together in one thread hop before the handler; its result is in
    `self.prepared`. The handler never runs unless the checks passed."""

    prepared: Any = None

    async def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:  # type: ignore[override]
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        method = request.method.lower()
        handler = getattr(self, method, None) if method in self.http_method_names else None
        prepare: Callable[..., Any] | None = getattr(self, f"prepare_{method}", None)

        def checks_and_prepare() -> Any:
            self.initial(request, *args, **kwargs)
            return prepare(request, *args, **kwargs) if (handler is not None and prepare is not None) else None

        try:
            self.prepared = await sync_to_async(checks_and_prepare)()
            if handler is None:
                response = self.http_method_not_allowed(request, *args, **kwargs)
            else:
                response = await handler(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's handle_exception decides what becomes a 4xx
            response = self.handle_exception(exc)
        response = self.finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            # Render here, in the event loop: Django would otherwise render in a thread hop.
            response.render()
            plain = HttpResponse(response.content, status=response.status_code, content_type=response["Content-Type"])
            for key, value in response.items():
                plain[key] = value
            return plain
        return response
