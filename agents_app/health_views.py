"""`/healthz` and `/readyz`: thin edges over agents_app.health. Plain Django views (no DRF): no
authentication, no CSRF, no session, JSON only, never cached; mount them with
`path("", include("agents_app.health_urls"))`.

* `GET /healthz`: the process answers (nothing else is checked): 200 `{"status": "ok"}`.
* `GET /readyz`: every dependency checked (agents_app.health): 200 when ready, 503 when not, with
  one entry per check. `?exclude=worker,beat` reports those as skipped (a web pod's readiness probe
  that should not take the site down when the workers are).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from agents_app.health import CHECKS, readiness

ALLOWED = ("GET", "HEAD")


def _json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _not_allowed(request: HttpRequest) -> JsonResponse | None:
    if request.method in ALLOWED:
        return None
    response = _json({"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, 405)
    response["Allow"] = ", ".join(ALLOWED)
    return response


@csrf_exempt
async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Cheap: no dependency is asked."""
    return _not_allowed(request) or _json({"status": "ok"})


def excluded_checks(request: HttpRequest) -> list[str]:
    """The `exclude` query parameter (repeated or comma-separated): names of checks; an unknown name
    is refused rather than ignored, so that a typo cannot quietly keep a check in."""
    names = [name.strip() for value in request.GET.getlist("exclude") for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"Unknown check(s) {', '.join(unknown)}; the checks are: {', '.join(CHECKS)}.")
    return names


@csrf_exempt
async def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every dependency this deployment needs answers, else 503."""
    if (refused := _not_allowed(request)) is not None:
        return refused
    try:
        skip = excluded_checks(request)
    except ValueError as exc:
        return _json({"detail": str(exc), "code": "invalid"}, 400)
    report = await readiness(skip=skip)
    return _json(report.as_dict(), 200 if report.ready else 503)
