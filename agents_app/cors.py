"""CORS is django-cors-headers' (docs/deployment.md#cors): the site adds its middleware and sets
CORS_ALLOWED_ORIGINS / CORS_ALLOWED_ORIGIN_REGEXES and CORS_URLS_REGEX (the demo site: from the
environment, for `/api/` and `/os/`). The apps answer no CORS themselves.

What remains here is the deprecated AGENTOS["AGNO_COMPAT_CORS_ORIGINS"] (the agno routes' own CORS
before): origins listed there are still allowed on the agno routes, through the middleware's
`check_request_enabled` signal, when the site runs django-cors-headers; `manage.py check` warns
(agentos.W003) until the site moves them to CORS_ALLOWED_ORIGINS.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from sessions_app.conf import agentos_settings


def agno_origin_allowed(sender: Any = None, request: Any = None, **kwargs: Any) -> bool:
    """django-cors-headers' `check_request_enabled` receiver: an origin of AGNO_COMPAT_CORS_ORIGINS
    calling an agno route (`*` in the list: any origin)."""
    from agents_app.agno_compat import url_prefix

    origins = agentos_settings.AGNO_COMPAT_CORS_ORIGINS or []
    prefix = url_prefix()
    if not origins or prefix is None or request is None or not request.path_info.startswith(f"/{prefix}"):
        return False
    origin = request.META.get("HTTP_ORIGIN")
    return bool(origin) and (origin in origins or "*" in origins)


def connect() -> None:
    """Connect the receiver when django-cors-headers is installed (a host site may not use it)."""
    try:
        from corsheaders.signals import check_request_enabled
    except ImportError:
        return
    check_request_enabled.connect(agno_origin_allowed, dispatch_uid="agentos-agno-compat-cors-origins")


def check_deprecated_cors_setting(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not agentos_settings.AGNO_COMPAT_CORS_ORIGINS:
        return []
    return [
        checks.Warning(
            'AGENTOS["AGNO_COMPAT_CORS_ORIGINS"] is deprecated: CORS is django-cors-headers\' now.',
            hint="Move its origins to CORS_ALLOWED_ORIGINS (the demo site: DJANGO_CORS_ALLOWED_ORIGINS) and make "
            "CORS_URLS_REGEX cover the agno routes; until then they are allowed on the agno routes only, and only "
            "when the site runs corsheaders.middleware.CorsMiddleware.",
            id="agentos.W003",
        )
    ]
