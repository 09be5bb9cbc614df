"""Telemetry tables.

Sender side: `TelemetryEvent`, the buffer (an outbox) that runs write one row into and the flush
task uploads from. Collector side: `TelemetrySender` (who may post, by a hashed key) and
`ReceivedEvent` (what they posted, unique per sender and event id, so a retried batch is never
counted twice).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class TelemetryEvent(models.Model):
    """One event waiting for upload (or uploaded, until purged). Its id is the idempotency key."""

    class Kind(models.TextChoices):
        RUN_CREATED = "run_created", "Run created"
        LAUNCH = "launch", "Launch"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="Also the idempotency key.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event_type = models.CharField(max_length=16, blank=True, help_text="agent, team, workflow or eval (run events).")
    payload = models.JSONField(help_text="The event as sent (schema in telemetry_app.schemas).")
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now, help_text="Not uploaded before this time.")
    attempts = models.PositiveIntegerField(default=0, help_text="Failed upload attempts.")
    claim = models.UUIDField(null=True, blank=True, help_text="The flush that holds this row while it uploads.")
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The flush's claim query: undelivered and due, oldest first. The expiry of undelivered
            # events scans it too (it holds exactly the undelivered rows, with created_at), which
            # spares every run's INSERT a third index to maintain.
            models.Index(
                fields=["next_attempt_at", "created_at"],
                condition=models.Q(delivered_at__isnull=True),
                name="telemetry_event_due",
            ),
            # Purging delivered events.
            models.Index(
                fields=["delivered_at"], condition=models.Q(delivered_at__isnull=False), name="telemetry_event_done"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class TelemetrySender(models.Model):
    """A deployment allowed to post telemetry to this collector. Only a hash of its key is stored."""

    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's first characters, to tell keys apart."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True, help_text="Inactive senders are refused (401).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ReceivedEvent(models.Model):
    """An event a sender posted to this collector, stored once per (sender, event id)."""

    sender = models.ForeignKey(TelemetrySender, on_delete=models.CASCADE, related_name="events")
    event_id = models.UUIDField()
    kind = models.CharField(max_length=16, choices=TelemetryEvent.Kind.choices)
    event_type = models.CharField(max_length=16, blank=True)
    site_id = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(help_text="When the event happened, at the sender.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["sender", "event_id"], name="received_event_once_per_sender")]
        indexes = [models.Index(fields=["created_at"], name="received_event_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id} from {self.sender_id}"


class DailyMetrics(models.Model):
    """One day's activity of one user (agno's per-user daily bucket), computed from the stored runs
    and sessions by `telemetry_app.daily.metrics_refresh` (never on a run's path): runs and sessions
    per kind, users, tokens, cost, and the breakdowns per model and per agent, team or workflow.
    A day is recomputed whole, so refreshing twice gives the same rows."""

    date = models.DateField(help_text="The day (UTC).")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_metrics", null=True, blank=True
    )
    agent_runs_count = models.PositiveIntegerField(default=0)
    agent_sessions_count = models.PositiveIntegerField(default=0)
    team_runs_count = models.PositiveIntegerField(default=0)
    team_sessions_count = models.PositiveIntegerField(default=0)
    workflow_runs_count = models.PositiveIntegerField(default=0)
    workflow_sessions_count = models.PositiveIntegerField(default=0)
    token_metrics = models.JSONField(default=dict, help_text="agno's token counters, summed over the day's runs.")
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0, help_text="What the day's runs cost.")
    model_metrics = models.JSONField(default=list, help_text="Per model: runs, tokens, cost.")
    component_metrics = models.JSONField(default=list, help_text="Per agent, team or workflow: runs, tokens, cost.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["date", "user"], name="daily_metrics_once_per_user_day")]

    def __str__(self) -> str:
        return f"{self.date} {self.user_id}"


class MetricsRefresh(models.Model):
    """The state of the metrics refresh (one row, id 1), shared by every process: who asked, when it
    started and finished, and how it ended. A refresh claims it with a conditional update, so two
    never run at once."""

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    days = models.PositiveIntegerField(default=0, help_text="Days recomputed by the last refresh.")
    covered_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The last completed refresh started then: the next one recomputes the days changed since.",
    )

    def __str__(self) -> str:
        return f"metrics refresh: {self.status}"
