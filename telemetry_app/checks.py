"""System checks for telemetry settings (run by manage.py check, migrate, runserver; no queries)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register

from telemetry_app.conf import RUNTIME_URLS, telemetry_settings


@register()
def telemetry_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    runtime = str(telemetry_settings.API_RUNTIME or "").strip().lower()
    if runtime not in RUNTIME_URLS:
        problems.append(
            Error(
                f"AGENTOS_API_RUNTIME is {runtime!r}; it must be one of {', '.join(RUNTIME_URLS)}.",
                id="telemetry_app.E001",
            )
        )
    if telemetry_settings.TELEMETRY:
        if not str(telemetry_settings.TELEMETRY_URL or "").strip() and runtime in ("stg", "prd"):
            problems.append(
                Warning(
                    "Telemetry is on but no collector is set: the stg/prd URLs are placeholders.",
                    hint="Set AGENTOS_TELEMETRY_URL to your collector (a site running telemetry_app).",
                    id="telemetry_app.W001",
                )
            )
        if not str(telemetry_settings.TELEMETRY_API_KEY or "").strip():
            problems.append(
                Warning(
                    "Telemetry is on but AGENTOS_TELEMETRY_API_KEY is empty: the collector will refuse uploads.",
                    hint="Create a sender on the collector (manage.py telemetry_sender_create NAME) and set its key.",
                    id="telemetry_app.W002",
                )
            )
        if int(telemetry_settings.TELEMETRY_BATCH_SIZE) < 1:
            problems.append(Error("AGENTOS_TELEMETRY_BATCH_SIZE must be at least 1.", id="telemetry_app.E002"))
        if telemetry_settings.TELEMETRY_MAX_SCHEMA_VERSION not in (1, 2, 3):
            problems.append(
                Error(
                    "AGENTOS_TELEMETRY_MAX_SCHEMA_VERSION must be 1, 2 or 3 "
                    f"(got {telemetry_settings.TELEMETRY_MAX_SCHEMA_VERSION!r}).",
                    id="telemetry_app.E003",
                )
            )
    return problems
