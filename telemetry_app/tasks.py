"""Celery task: upload the telemetry buffer. Scheduled by Celery beat every
TELEMETRY_FLUSH_INTERVAL_SECONDS (CELERY_BEAT_SCHEDULE in the site's settings).

Safe to run anywhere, any number of times, concurrently: each flush claims its rows, retries are
the rows' own backoff (not Celery retries), and the collector de-duplicates by event id.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from telemetry_app.services import telemetry_flush

FLUSH_TASK = "telemetry_app.flush"


@shared_task(name=FLUSH_TASK, ignore_result=True)
def telemetry_flush_task() -> dict[str, Any]:
    return telemetry_flush().as_dict()
