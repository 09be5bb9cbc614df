"""The one error map: each failure a caller can meet has a stable `code` and an HTTP status, and
every edge renders it from here, so a client tells a busy session from an ended one without parsing
English (before, seven edges turned errors into HTTP by hand, with only a `detail`):

* REST: `{"detail": "...", "code": "..."}` (`exception_handler` in sessions_app.api_base);
* websocket: an `Error` frame with `error_type`/`code` and `content`/`detail`; the socket stays open;
* agno's routes: FastAPI's shapes with `code` added (`agno_problem` in sessions_app.api_base).

Services, selectors and the engine raise `DomainError` subclasses, each with its code and status.
This module imports no web framework (the engine raises these) and lives in the bottom app, so all
three apps use it. It also maps a failed run's error type to its HTTP status: never a 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


class ImageRefused(DomainError):
    """An image sent with a run's message cannot be taken (sessions_app.images). Raised before
    anything is written: no run, no session, no file. `index` (in the extra fields) is the image's
    place in the request's list, when one image is at fault."""

    code = "invalid_image"
    status = 400
    default_detail = "This image cannot be taken."


class InvalidImage(ImageRefused):
    """Not an image we can read: bad base64, a URL that is not http(s), unknown keys, a bad `detail`."""


class TooManyImages(ImageRefused):
    code = "too_many_images"


class ImagesNotAccepted(ImageRefused):
    """This kind of run takes no images (workflows: their steps get text)."""

    code = "images_not_accepted"


class ImageTooLarge(ImageRefused):
    code = "image_too_large"
    status = 413


class UnsupportedImageType(ImageRefused):
    """The bytes are not one of the allowed image formats (whatever type the client declared)."""

    code = "unsupported_media_type"
    status = 415


class AuthenticationError(DomainError):
    """Credentials were sent but are not accepted (unknown, expired, revoked): 401. The REST edge
    answers it as DRF's AuthenticationFailed (with its WWW-Authenticate header); a websocket
    handshake with them is refused."""

    code = "authentication_failed"
    status = 401
    default_detail = "Invalid token."


class ForbiddenError(DomainError):
    """The caller is known but these credentials may not do this: 403."""

    code = "permission_denied"
    status = 403
    default_detail = "You do not have permission to perform this action."


class EvalInvalid(DomainError):
    """An eval suite or case that cannot be (agents_app.evals): the body names the field at fault."""

    code = "invalid_eval"
    status = 400
    default_detail = "This eval suite or case is not valid."

    def __init__(self, detail: str = "", *, field: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.field = field


class UnknownEvalSuite(NotFoundError):
    code = "unknown_eval_suite"
    default_detail = "No eval suite with this id."


class UnknownEvalRun(NotFoundError):
    code = "unknown_eval_run"
    default_detail = "No eval run with this id."


class EvalRunFinished(ConflictError):
    """Cancelling an eval run that has already ended."""

    code = "eval_run_finished"
    default_detail = "This eval run has already ended."


@dataclass(frozen=True, slots=True)
class Problem:
    """One failure, ready to render on any edge."""

    status: int
    code: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body = dict(self.extra)  # field errors keep their shape, a `detail` field error included
        body.setdefault("detail", self.detail)
        body["code"] = self.code
        return body


def problem_for(exc: BaseException) -> Problem | None:
    """The answer for a domain error, or None for anything else (the REST base, sessions_app.api_base,
    also answers DRF's and Django's own errors)."""
    if not isinstance(exc, DomainError):
        return None
    extra = {k: str(v) if not isinstance(v, int | float | bool | list | dict) else v for k, v in exc.extra.items()}
    if exc.field:
        extra[exc.field] = [exc.detail]
    return Problem(exc.status, exc.code, exc.detail, extra)


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


# agno's own texts for what its clients most often meet (sessions_app.api_base.agno_problem).
AGNO_DETAIL = {
    "unknown_agent": "Agent not found",
    "unknown_team": "Team not found",
    "unknown_workflow": "Workflow not found",
}


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
    "interrupted": 503,  # the server process running it stopped (agents_app.runtime takes such runs over)
    "budget_exceeded": 422,  # the run reached a limit of its own (model calls, tokens, seconds)
    # A paused run nobody decided on in time (or one a new message in its session expired): its
    # pending tool calls never ran. The client's side of the bargain was not kept: 409.
    "approval_expired": 409,
}
UPSTREAM_FAILURE = 502
# A team's or workflow's failure that is a member's or step's: the status follows the child's error.
CHILD_FAILURES = ("member_error", "step_error")


def run_http_status(result: dict[str, Any]) -> int:
    """The HTTP status of a run's JSON result: 200 when it completed, was cancelled (someone asked
    for it) or paused (it waits for a person to decide on its tool calls), else from its error type
    (for a member's or step's failure, the child's error type)."""
    if result.get("status") in ("completed", "cancelled", "paused"):
        return 200
    error_type = (result.get("error") or {}).get("type", "")
    if error_type in CHILD_FAILURES:
        for child in result.get("member_runs") or result.get("step_results") or []:
            child_type = (child.get("error") or {}).get("type", "")
            if child_type:
                return RUN_ERROR_STATUS.get(child_type, UPSTREAM_FAILURE)
        return UPSTREAM_FAILURE
    return RUN_ERROR_STATUS.get(error_type, UPSTREAM_FAILURE)
