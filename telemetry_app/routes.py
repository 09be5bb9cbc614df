"""The telemetry API's route paths, in one place: the client posts to them and the collector's
URLconf serves them."""

from __future__ import annotations


class ApiRoutes:
    """Paths on a telemetry API host (the base URL comes from the runtime, see `telemetry_app.conf`)."""

    BATCHES = "/api/telemetry/batches"


class PageRoutes:
    """Staff pages served by this app."""

    DASHBOARD = "/telemetry/dashboard/"
