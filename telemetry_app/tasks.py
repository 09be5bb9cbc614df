"""Celery task: upload the telemetry buffer. Scheduled by Celery beat every
TELEMETRY_FLUSH_INTERVAL_SECONDS (CELERY_BEAT_SCHEDULE in the site's settings).

Safe to run anywhere, any number of times, concurrently: each flush claims its rows, retries are
the rows' own backoff (not Celery retries), and the collector de-duplicates by event id.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from telemetry_app.daily import metrics_refresh
from telemetry_app.services import telemetry_flush

FLUSH_TASK = "telemetry_app.flush"
METRICS_REFRESH_TASK = "telemetry_app.metrics_refresh"


@shared_task(name=FLUSH_TASK, ignore_result=True)
def telemetry_flush_task() -> dict[str, Any]:
    return telemetry_flush().as_dict()


@shared_task(name=METRICS_REFRESH_TASK, ignore_result=True)
def metrics_refresh_task(claimed: bool = False) -> int:
    """Recompute the daily metrics of the days that changed (Celery beat, or `POST /os/metrics/refresh`,
    which claims the refresh before it publishes: `claimed`). Idempotent; -1 when one is running."""
    return metrics_refresh(claimed=claimed)
