"""Errors as typed exceptions: each carries the API's machine-readable `code` (the server's one
error map, sessions_app/errors.py on the site), its HTTP `status`, `detail` and the whole body, so a
caller branches on a class or a code, never on English text."""

from __future__ import annotations

from typing import Any


class AgentOSError(Exception):
    """Base of every error this client raises."""

    def __init__(
        self, detail: str, *, code: str = "error", status: int | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.body: dict[str, Any] = body or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, detail={self.detail!r})"


class ConnectionFailed(AgentOSError):
    """The site could not be reached, or a stream could not be resumed within the retries."""


class BadRequest(AgentOSError):
    """400, 413, 415, 422: the request was refused as it is (`invalid`, `invalid_image`,
    `invalid_eval`, …); the fields at fault are in `body`."""


class AuthenticationFailed(AgentOSError):
    """401: no token, a wrong one, or an expired or revoked scoped token."""


class PermissionDenied(AgentOSError):
    """403: e.g. `token_read_only`, `permission_denied`."""


class NotFound(AgentOSError):
    """404: `not_found`, `unknown_agent`, `unknown_team`, `unknown_workflow`, `unknown_session`."""


class Conflict(AgentOSError):
    """409: `session_busy`, `session_ended`, `session_paused`, `run_not_paused`, `eval_run_finished`, …"""


class RateLimited(AgentOSError):
    """429 (`rate_limited`, `quota_exceeded`) still refused after the client's bounded retries.
    `retry_after`: seconds the site asked to wait (None when it did not say)."""

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class ServerError(AgentOSError):
    """5xx: `internal_error`, `run_unavailable`, `channel_layer_unavailable`, …"""


class RunFailed(AgentOSError):
    """A run that started and failed (REST answers its stored JSON with a 4xx/5xx status; a stream
    ends with `RunError`): `code` is its `error.type` (e.g. `model_unreachable`, `budget_exceeded`),
    `result` the run's JSON. Raised by `RunResult.raise_for_error()`: a failed run is otherwise
    returned, as the site answers it."""

    def __init__(self, detail: str, *, result: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.result = result or {}


_BY_STATUS: dict[int, type[AgentOSError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    422: BadRequest,
    429: RateLimited,
}


def error_from_body(status: int, body: Any, *, retry_after: float | None = None) -> AgentOSError:
    """The exception for an error answer (`{"detail", "code", …}`); a body that is not the site's
    JSON (a proxy's HTML page) still gives the status's class, code `error`."""
    data = body if isinstance(body, dict) else {}
    detail = str(data.get("detail") or (body if isinstance(body, str) and body else f"HTTP {status}"))
    code = str(data.get("code") or "error")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else AgentOSError)
    if cls is RateLimited:
        return RateLimited(detail, code=code, status=status, body=data, retry_after=retry_after)
    return cls(detail, code=code, status=status, body=data)


def error_from_frame(frame: dict[str, Any]) -> AgentOSError:
    """The exception for an `Error` frame of the websocket or of an SSE stream (same codes as REST)."""
    code = str(frame.get("code") or frame.get("error_type") or "error")
    detail = str(frame.get("detail") or frame.get("content") or code)
    status = {
        "not_found": 404,
        "unknown_agent": 404,
        "unknown_team": 404,
        "unknown_workflow": 404,
        "unknown_session": 404,
        "session_busy": 409,
        "session_ended": 409,
        "session_paused": 409,
        "run_not_paused": 409,
        "unknown_eval_suite": 404,
        "unknown_eval_run": 404,
        "eval_run_finished": 409,
        "token_read_only": 403,
        "rate_limited": 429,
        "quota_exceeded": 429,
        "run_unavailable": 503,
        "internal_error": 500,
        "token_revoked": 401,
        "token_expired": 401,
    }.get(code, 400)
    retry = frame.get("retry_after")
    return error_from_body(status, {**frame, "code": code, "detail": detail}, retry_after=_float(retry))


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
