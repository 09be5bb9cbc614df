"""Upload the telemetry buffer once, now, in this process (what the Celery beat task does). On a
terminal, a progress bar counts the events delivered (a large buffer takes many batches)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from sessions_app.progress import is_terminal, progress
from telemetry_app.conf import telemetry_enabled
from telemetry_app.models import TelemetryEvent
from telemetry_app.services import telemetry_flush


class Command(BaseCommand):
    help = "Upload due telemetry events to the collector in batches, once; prints what happened as JSON."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--max-batches", type=int, default=None, help="Stop after this many batches.")
        parser.add_argument(
            "--time-budget", type=float, default=None, help="Seconds to keep uploading (default: 80%% of the interval)."
        )

    def handle(self, *args: Any, max_batches: int | None, time_budget: float | None, **options: Any) -> None:
        # The total is one COUNT, asked only when a bar will show it.
        total = (
            TelemetryEvent.objects.filter(delivered_at__isnull=True).count()
            if is_terminal(self.stdout) and telemetry_enabled()
            else None
        )
        with progress(self.stdout, "Uploading telemetry", total=total) as bar:
            result = telemetry_flush(max_batches=max_batches, time_budget=time_budget, on_batch=bar.advance)
        self.stdout.write(json.dumps(result.as_dict()))
        if not result.enabled:
            self.stderr.write("Telemetry is off (AGENTOS_TELEMETRY): nothing uploaded.")
