"""Telemetry settings: keys of the `AGENTOS` dict in the host's settings, with a default for each.

The site's settings fill them from the environment (`AGENTOS_TELEMETRY`, `AGENTOS_API_RUNTIME`,
`AGENTOS_TELEMETRY_URL`, ...; see docs/telemetry.md). Values are read on access, never cached, so
`override_settings` and the `settings` test fixture see changes.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from django.conf import settings

# Upload base URL per API runtime (`AGENTOS_API_RUNTIME`); `AGENTOS_TELEMETRY_URL` overrides the
# selected one. `dev` is a collector on this machine (this project under runserver). No public
# collector is operated for this project yet: `stg` and `prd` are reserved placeholder hosts, so a
# deployment that turns telemetry on points AGENTOS_TELEMETRY_URL at its own collector.
RUNTIME_URLS: dict[str, str] = {
    "dev": "http://127.0.0.1:8000",
    "stg": "https://telemetry-stg.agentos.example",
    "prd": "https://telemetry.agentos.example",
}

DEFAULTS: dict[str, Any] = {
    # Record telemetry events (and upload them). Off: zero queries, nothing recorded.
    "TELEMETRY": False,
    # dev / stg / prd: picks the upload URL from RUNTIME_URLS.
    "API_RUNTIME": "prd",
    # Overrides the URL of the selected runtime (scheme://host[:port], no path).
    "TELEMETRY_URL": "",
    # This sender's key on the collector (a TelemetrySender there), sent as a Bearer token.
    "TELEMETRY_API_KEY": "",
    # Events per upload request.
    "TELEMETRY_BATCH_SIZE": 500,
    # Seconds between two flushes by Celery beat.
    "TELEMETRY_FLUSH_INTERVAL_SECONDS": 60.0,
    # Timeout of one upload request, in seconds.
    "TELEMETRY_TIMEOUT_SECONDS": 60.0,
    # Undelivered events older than this are dropped (and counted in the log); delivered events are
    # purged after the same time.
    "TELEMETRY_MAX_AGE_SECONDS": 7 * 24 * 3600,
    # The newest run event schema version the collector accepts: 3 (configuration versions), 2
    # (cost and cached tokens), or 1 for a collector of an older version (run events are then sent
    # without the newer fields).
    "TELEMETRY_MAX_SCHEMA_VERSION": 3,
    # Include the run's input and output text in run events. Off by default: counts and timings only.
    "TELEMETRY_INCLUDE_CONTENT": False,
    # The site id sent with launch events and batches; empty: derived from SECRET_KEY (stable, not
    # reversible).
    "TELEMETRY_SITE_ID": "",
    # Backoff after a failed upload: base * 2**(attempts-1), capped, on the batch's rows.
    "TELEMETRY_BACKOFF_BASE_SECONDS": 30.0,
    "TELEMETRY_BACKOFF_MAX_SECONDS": 3600.0,
    # Collector side: the largest batch accepted (events, and bytes of the request body).
    "TELEMETRY_COLLECTOR_MAX_EVENTS": 1000,
    "TELEMETRY_COLLECTOR_MAX_BYTES": 5 * 1024 * 1024,
    # Seconds between two refreshes of the daily metrics (agno's GET /os/metrics) by Celery beat;
    # 0: only when asked (POST /os/metrics/refresh).
    "METRICS_REFRESH_INTERVAL_SECONDS": 3600.0,
    # Export each finished run's trace as OpenTelemetry spans (OTLP/HTTP, configured by the SDK's
    # OTEL_EXPORTER_OTLP_* variables). Off: nothing of the SDK is imported.
    "OTEL_TRACES": False,
    # The `service.name` of the exported spans.
    "OTEL_SERVICE_NAME": "agentos",
    # Experimental features (see docs/telemetry.md, "Alpha features").
    "ALPHA_FEATURES": False,
    # Prometheus metrics at /metrics (telemetry_app.metrics): served at all, and the Bearer token a
    # scraper sends (empty: staff users only, by their session).
    "METRICS_ENABLED": True,
    "METRICS_TOKEN": "",
}


class TelemetrySettings:
    """Attribute access with defaults: `telemetry_settings.TELEMETRY_BATCH_SIZE`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown telemetry setting: {name}")
        user = getattr(settings, "AGENTOS", None) or {}
        return user.get(name, DEFAULTS[name])


telemetry_settings = TelemetrySettings()


def telemetry_enabled() -> bool:
    """The hot-path check: one dict lookup, no query."""
    user = getattr(settings, "AGENTOS", None) or {}
    return bool(user.get("TELEMETRY", False))


def alpha_features_enabled() -> bool:
    return bool(telemetry_settings.ALPHA_FEATURES)


class ImproperlyConfiguredRuntime(ValueError):
    pass


def telemetry_base_url() -> str:
    """The telemetry API's base URL: AGENTOS_TELEMETRY_URL, else the runtime's entry in RUNTIME_URLS."""
    override = str(telemetry_settings.TELEMETRY_URL or "").strip()
    if override:
        return override.rstrip("/")
    runtime = str(telemetry_settings.API_RUNTIME or "prd").strip().lower()
    try:
        return RUNTIME_URLS[runtime]
    except KeyError:
        raise ImproperlyConfiguredRuntime(
            f"AGENTOS_API_RUNTIME must be one of {', '.join(RUNTIME_URLS)}; got {runtime!r}."
        ) from None


def telemetry_site_id() -> str:
    """A stable id for this deployment: TELEMETRY_SITE_ID, else a UUID derived from SECRET_KEY."""
    explicit = str(telemetry_settings.TELEMETRY_SITE_ID or "").strip()
    if explicit:
        return explicit[:64]
    digest = hmac.new(settings.SECRET_KEY.encode(), b"agentos-telemetry-site-id", hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))
