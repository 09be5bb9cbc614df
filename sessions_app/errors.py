"""The one error map: how a domain error, or a DRF/Django error, becomes an answer on every edge.

Why one module: the same failure (an unknown agent, a busy session, an ended session) used to be
turned into HTTP by hand in seven places, with bodies that said only `detail`, so a client could not
tell a busy session from an ended one without parsing English. Here each failure has a stable,
machine-readable `code`, and every edge renders it from this module:

* REST (DRF): `{"detail": "...", "code": "..."}` with the status below (`exception_handler`, which
  every API view of the three apps uses; a host may set it as DRF's EXCEPTION_HANDLER too).
* websocket: an `Error` frame, `{"event": "Error", "error_type": code, "code": code, "content": detail,
  "detail": detail}`; the socket stays open (`ws_error_frame`).
* agno's routes: FastAPI's shapes (`{"detail": ...}`, 422 with a list), with `code` added.

Domain errors are raised by services, selectors and the engine (which know nothing of HTTP) as
subclasses of `DomainError`; each class carries its code and its HTTP status. This module lives in
sessions_app, the bottom app, so that all three apps can use it without an import going upwards.
It also holds the HTTP status of a run that ended in an error (`run_http_status`): a failed run is
never a 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """An error a caller caused or must hear about. Subclasses set `code` (stable, snake_case, the
    same on REST, websocket and agno routes) and `status` (the HTTP status of a REST answer)."""

    code: str = "error"
    status: int = 400
    default_detail: str = "The request could not be completed."
    # For errors about one input field: the body also gets `{field: [detail]}` (DRF's field shape).
    field: str | None = None

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.default_detail)
        self.extra: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}

    @property
    def detail(self) -> str:
        return str(self)


class NotFoundError(DomainError, LookupError):
    """Base of "no such thing for you" errors (we never tell whether it exists for someone else)."""

    code = "not_found"
    status = 404
    default_detail = "Not found."


class ConflictError(DomainError):
    code = "conflict"
    status = 409
    default_detail = "Conflict with the current state."


class UnavailableError(DomainError):
    """A dependency this request needs (the channel layer, the process running a run) is gone."""

    code = "unavailable"
    status = 503
    default_detail = "A service this request needs is unavailable; try again."


@dataclass(frozen=True, slots=True)
class Problem:
    """One failure, ready to render on any edge."""

    status: int
    code: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {**self.extra, "detail": self.detail, "code": self.code}


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


def problem_for(exc: BaseException) -> Problem | None:
    """The answer for `exc`, or None when it is not an error we answer (a bug: a 500)."""
    if isinstance(exc, DomainError):
        extra = {k: str(v) if not isinstance(v, int | float | bool | list | dict) else v for k, v in exc.extra.items()}
        if exc.field:
            extra[exc.field] = [exc.detail]
        return Problem(exc.status, exc.code, exc.detail, extra)
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


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, with every error body carrying `code` next to `detail`, and domain
    errors answered with their own status. Returns None (DRF then re-raises: a 500) for anything else."""
    problem = problem_for(exc)
    if problem is None:
        return None
    response = drf_exception_handler(exc, context) if isinstance(exc, drf.APIException) else None
    if response is None:
        response = Response(status=problem.status)
    response.data = problem.body()
    return response


def ws_error_frame(problem: Problem | BaseException, **ref: Any) -> dict[str, Any]:
    """A websocket `Error` frame. `error_type` is the frame's historical name of the code."""
    if not isinstance(problem, Problem):
        problem = problem_for(problem) or Problem(500, "internal_error", "Internal error.")
    return {
        "event": "Error",
        "error_type": problem.code,
        "code": problem.code,
        "content": problem.detail,
        "detail": problem.detail,
        **{k: v for k, v in problem.extra.items() if k not in ("message",)},
        **ref,
    }


def ws_error(code: str, detail: str, **ref: Any) -> dict[str, Any]:
    """An `Error` frame for a frame the socket cannot act on (no domain error behind it)."""
    return ws_error_frame(Problem(400, code, detail), **ref)


# ---- agno's routes ---------------------------------------------------------------------------------

# agno's own texts for what its clients most often meet.
AGNO_DETAIL = {
    "unknown_agent": "Agent not found",
    "unknown_team": "Team not found",
    "unknown_workflow": "Workflow not found",
}


def fastapi_errors(detail: Any, where: str) -> list[dict[str, Any]]:
    """DRF's validation errors as FastAPI's 422 list: `{loc: [where, field], msg, type}`."""
    errors: list[dict[str, Any]] = []
    if isinstance(detail, dict):
        for field, messages in detail.items():
            for message in messages if isinstance(messages, list) else [messages]:
                text = str(message) if not isinstance(message, dict | list) else orjson.dumps(message).decode()
                loc = [where] if field == "non_field_errors" else [where, field]
                errors.append({"loc": loc, "msg": text, "type": getattr(message, "code", "value_error")})
    else:
        for message in detail if isinstance(detail, list) else [detail]:
            errors.append({"loc": [where], "msg": str(message), "type": getattr(message, "code", "value_error")})
    return errors


def agno_problem(exc: BaseException, *, where: str) -> tuple[int, dict[str, Any]]:
    """An error in agno's (FastAPI's) shapes, with our `code` added: 422 with a list of `{loc, msg,
    type}` for invalid fields (where: "body" or "query"), else `{"detail": "..."}`."""
    if isinstance(exc, drf.ValidationError) or (isinstance(exc, DomainError) and exc.field):
        detail = exc.detail if isinstance(exc, drf.ValidationError) else {exc.field: [exc.detail]}
        return 422, {"detail": fastapi_errors(detail, where), "code": "validation_error"}
    problem = problem_for(exc) or Problem(500, "internal_error", "Internal Server Error")
    text = AGNO_DETAIL.get(problem.code, problem.detail)
    if problem.code == "unknown_session" and "session_id" in problem.extra:
        text = f"Session with id '{problem.extra['session_id']}' not found"
    return problem.status, {"detail": text, "code": problem.code}


# ---- failed runs --------------------------------------------------------------------------------

# The HTTP status of a run that ended in an error, by its error type: the status says which side
# failed. A guardrail refusing the client's message is the client's side (422: well-formed, refused
# by policy; the run is stored with the reason, unlike a 400 where nothing is written). A refused
# answer is the model's side, like an answer that misses the output schema: the default 502.
RUN_ERROR_STATUS: dict[str, int] = {
    "model_timeout": 504,
    "model_rate_limited": 503,
    "internal_error": 500,
    "input_rejected": 422,
    "hook_error": 500,  # a hook of the site's own code failed (after its retries)
    "hook_timeout": 504,
    "delegation_depth_exceeded": 500,  # the operator nested teams deeper than the team allows
    "step_function_error": 500,  # a step function of the site's own code failed
}
UPSTREAM_FAILURE = 502
# A team's or workflow's failure that is a member's or step's: the status follows the child's error.
CHILD_FAILURES = ("member_error", "step_error")


def run_http_status(result: dict[str, Any]) -> int:
    """The HTTP status of a run's JSON result: 200 when it completed or was cancelled (someone asked
    for it), else from its error type (for a member's or step's failure, the child's error type)."""
    if result.get("status") in ("completed", "cancelled"):
        return 200
    error_type = (result.get("error") or {}).get("type", "")
    if error_type in CHILD_FAILURES:
        for child in result.get("member_runs") or result.get("step_results") or []:
            child_type = (child.get("error") or {}).get("type", "")
            if child_type:
                return RUN_ERROR_STATUS.get(child_type, UPSTREAM_FAILURE)
        return UPSTREAM_FAILURE
    return RUN_ERROR_STATUS.get(error_type, UPSTREAM_FAILURE)
