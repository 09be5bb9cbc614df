"""The base of the REST edges of the three apps (it lives in sessions_app, the bottom app, so that
every app can use it): strict input handling for every API view, and an async APIView.

`StrictInputMixin` (on every API view, sync or async) makes every bad body a 4xx with a JSON body:
JSON is parsed strictly (orjson: no NaN, no lone surrogates, nesting capped), and the request-size
guards Django raises as exceptions (which would otherwise become its HTML 400 page) become DRF
errors: 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, 400 for too many fields or files.

`AsyncAPIView`: DRF's parsing, auth, permissions and error format, on an async handler. DRF's own
views are sync; under ASGI a sync view holds a worker thread for the whole model call, and all sync
views share one thread, so concurrent runs would queue behind each other. Here the handler is a
coroutine; the sync parts (authentication, which may query the database) run in one thread hop
that the handler combines with its own database work via `in_thread`.
"""

from __future__ import annotations

import codecs
import inspect
import io
import logging
from collections.abc import Callable
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions as drf
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser, get_encoding
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from sessions_app.db import db_call
from sessions_app.errors import AGNO_DETAIL, DomainError, Problem, problem_for
from sessions_app.images import encoded_allowance, image_text_chars

logger = logging.getLogger(__name__)


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class StrictJSONParser(JSONParser):
    """RFC 8259 JSON, parsed by orjson. DRF's parser (the stdlib's) raises RecursionError, a 500,
    on deeply nested input and lets lone surrogates (`"\\ud800"`) through to code that cannot
    encode them; orjson refuses both (nesting is capped at 1024), as well as NaN and Infinity."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        encoding = get_encoding(parser_context or {})
        raw = stream.read()
        try:
            # orjson reads UTF-8 bytes, or a str: decode first when the client declared another charset.
            text = raw if codecs.lookup(encoding).name == "utf-8" else raw.decode(encoding)
            return orjson.loads(text)
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class ImageJSONParser(BaseParser):
    """StrictJSONParser for the bodies of runs, which may carry images as base64 text (`images`:
    `data`, or `data:` URLs): the body may be larger than DATA_UPLOAD_MAX_MEMORY_SIZE by room for
    IMAGE_MAX_COUNT images of IMAGE_MAX_BYTES (sessions_app.images), and the rest of it, what is not
    image text, still counts against DATA_UPLOAD_MAX_MEMORY_SIZE (both: 413 `request_too_large`).
    It reads the request's stream itself (DRF's JSONParser subclasses get `request.body`, which
    Django caps at DATA_UPLOAD_MAX_MEMORY_SIZE)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        cap = None if limit is None else limit + encoded_allowance()
        raw = stream.read() if cap is None else stream.read(cap + 1)
        if cap is not None and len(raw) > cap:
            raise RequestTooLarge(f"The request body is larger than the limit of {cap} bytes (with its images).")
        data = StrictJSONParser().parse(io.BytesIO(raw), media_type, parser_context)
        if limit is not None and len(raw) - image_text_chars(data) > limit:
            raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes (besides its images).")
        return data


def as_api_exception(exc: Exception) -> Exception:
    """Django's request-size guards as DRF errors, so they answer JSON instead of an HTML page."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return ParseError(str(exc))
    return exc


class StrictInputMixin:
    # For every API view: strict JSON, and every body the parsers refuse is a 4xx JSON error.
    # (A comment, not a docstring: drf-spectacular would show an inherited docstring as the
    # description of every operation of the views that have none.)
    parser_classes = [StrictJSONParser, FormParser, MultiPartParser]

    def handle_exception(self, exc: Exception) -> Response:
        request = getattr(self, "request", None)
        if getattr(getattr(request, "accepted_renderer", None), "format", "") == "event-stream":
            # A client that asked for an event stream gets its error as JSON (nothing streamed yet).
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"  # type: ignore[union-attr]
        return super().handle_exception(as_api_exception(exc))  # type: ignore[misc]

    def get_exception_handler(self) -> Any:
        # The one error map (sessions_app.errors): every error body has `code` next to `detail`, and
        # domain errors raised by services and the engine get their own status.
        return exception_handler


class AsyncAPIView(StrictInputMixin, APIView):
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
            self.prepared = await db_call(checks_and_prepare)
            if handler is None:
                response = self.http_method_not_allowed(request, *args, **kwargs)
            elif inspect.iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:
                # DRF's own handlers (OPTIONS) are sync.
                response = await sync_to_async(handler)(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's handle_exception decides what becomes a 4xx
            response = self.handle_exception(exc)
        response = self.finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            # Render here, in the event loop: Django would otherwise render in a thread hop.
            response.render()
            plain = HttpResponse(response.content, status=response.status_code)
            if not response.has_header("Content-Type"):  # e.g. an empty 204
                del plain["Content-Type"]
            for key, value in response.items():
                plain[key] = value
            return plain
        return response


# ---- Error bodies ------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """The body of an error that is not about particular fields (sessions_app.errors)."""

    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="What went wrong, for programs: stable, snake_case.")


VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Field name (or `non_field_errors`) -> list of messages, plus `detail` (the first message) and "
        '`code` ("invalid"). A body that cannot be parsed at all (malformed JSON, bad multipart, too many '
        'fields) gives `{"detail": "...", "code": "parse_error"}` instead.'
    ),
    "additionalProperties": {},
    "minProperties": 1,
}

_ERROR_DESCRIPTIONS = {
    400: "Invalid input: the fields at fault with their messages, or `detail` for a malformed body.",
    401: "Not authenticated: no credentials, or an unknown token (`token_expired`, `token_revoked`: a scoped API "
    "token that has expired or was revoked).",
    403: "Not allowed: staff only, a read-only API token (`token_read_only`), or (cookie authentication) a missing "
    "CSRF token.",
    404: "No such object, or not yours.",
    409: "Conflict with the current state of the object.",
    413: "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.",
    415: "The Content-Type is not one of the documented request media types.",
    429: "Too many requests, or a quota is used up; `Retry-After` says when to try again.",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation: `error_responses(400, 401, 404)`.

    Every 4xx body is JSON: 400 is a validation error (field -> messages), the others `{"detail"}`.
    A keyword `e404="..."` replaces the default description of that status.
    """
    result = {}
    for code in codes:
        description = descriptions.get(f"e{code}", _ERROR_DESCRIPTIONS[code])
        body = VALIDATION_ERROR_SCHEMA if code == 400 else ErrorSerializer
        result[code] = OpenApiResponse(body, description=description)
    return result


# What any operation with a request body can answer besides its own errors.
BODY_ERRORS = (400, 413, 415)


# ---- errors: the one map (sessions_app.errors) on DRF and on agno's routes ----------------------------


def _first_message(detail: Any) -> str:
    """The first human-readable message of DRF's nested error detail (for `detail` next to the fields)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key in ("non_field_errors", "detail") else f"{key}: {text}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def api_problem(exc: BaseException) -> Problem | None:
    """The answer for `exc` (a domain error, or DRF's or Django's own), or None when it is not an
    error we answer (a bug: a 500)."""
    domain = problem_for(exc)
    if domain is not None:
        return domain
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            return Problem(400, "invalid", _first_message(detail), dict(detail))
        return Problem(400, "invalid", _first_message(detail), {"errors": detail})
    if isinstance(exc, drf.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        return Problem(exc.status_code, str(code), str(exc.detail))
    if isinstance(exc, Http404):
        return Problem(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return Problem(403, "permission_denied", str(exc) or "You do not have permission to perform this action.")
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler, with every error body carrying `code` next to `detail`, domain
    errors answered with their own status, and anything else a JSON 500 (`internal_error`)."""
    problem = api_problem(exc)
    if problem is None:  # a bug of ours: logged with its traceback, answered in the API's shape
        logger.error("Internal error in %s", type(context.get("view")).__name__, exc_info=exc)
        problem = Problem(500, "internal_error", "Internal server error.")
    response = drf_exception_handler(exc, context) if isinstance(exc, drf.APIException) else None
    if response is None:
        response = Response(status=problem.status)
    response.data = problem.body()
    retry_after = problem.extra.get("retry_after")
    if isinstance(retry_after, int) and retry_after > 0:  # a limit that lifts at a known time (quotas)
        response["Retry-After"] = str(retry_after)
    return response


# ---- agno's routes ---------------------------------------------------------------------------------


def fastapi_errors(detail: Any, where: str) -> list[dict[str, Any]]:
    """DRF's validation errors as FastAPI's 422 list: `{loc: [where, field, (index...)], msg, type}`,
    nested field and list-item errors (DRF keys those by index) flattened into their location."""
    errors: list[dict[str, Any]] = []

    def walk(node: Any, loc: list[Any]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, loc if key == "non_field_errors" else [*loc, key])
        elif isinstance(node, list) and any(isinstance(item, dict | list) for item in node):
            for index, item in enumerate(node):
                walk(item, [*loc, index])
        else:
            for message in node if isinstance(node, list) else [node]:
                errors.append({"loc": loc, "msg": str(message), "type": getattr(message, "code", "value_error")})

    walk(detail, [where])
    return errors


def agno_problem(exc: BaseException, *, where: str) -> tuple[int, dict[str, Any]]:
    """An error in agno's (FastAPI's) shapes, with our `code` added: 422 with a list of `{loc, msg,
    type}` for invalid fields (where: "body" or "query"), else `{"detail": "..."}`."""
    if isinstance(exc, drf.ValidationError) or (isinstance(exc, DomainError) and exc.field):
        detail = exc.detail if isinstance(exc, drf.ValidationError) else {exc.field: [exc.detail]}
        return 422, {"detail": fastapi_errors(detail, where), "code": "validation_error"}
    problem = api_problem(exc) or Problem(500, "internal_error", "Internal Server Error")
    text = AGNO_DETAIL.get(problem.code, problem.detail)
    if problem.code == "unknown_session" and "session_id" in problem.extra:
        text = f"Session with id '{problem.extra['session_id']}' not found"
    body = {"detail": text, "code": problem.code}
    if problem.status == 429:  # when to try again (quotas, rate limits), as the REST API says it
        body.update({k: v for k, v in problem.extra.items() if k in ("retry_after", "resets_at", "limit", "quota")})
    return problem.status, body


@csrf_exempt  # a 404 whatever the method: it changes nothing, so a missing CSRF token is no reason for a 403
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """A path under the REST API that nothing serves: a JSON 404 in the API's shape, not Django's
    HTML page (mount it last under the API's prefix)."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
