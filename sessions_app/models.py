"""Conversations as data: a session holds runs; a run holds the messages it added."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# Exactly one of agent, team and workflow is set (on sessions and on runs).
ONE_COMPONENT = (
    models.Q(agent__isnull=False, team__isnull=True, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=False, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=True, workflow__isnull=False)
)


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_sessions")
    # A session belongs to exactly one agent, team or workflow.
    agent = models.ForeignKey(
        "agents_app.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    team = models.ForeignKey(
        "agents_app.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    workflow = models.ForeignKey(
        "agents_app.Workflow", null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    name = models.CharField(max_length=200, blank=True)
    state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="session_user_recent")]
        constraints = [
            models.CheckConstraint(condition=ONE_COMPONENT, name="session_one_component"),
        ]

    def __str__(self) -> str:
        return self.name or f"Session {self.id}"

    @property
    def component_type(self) -> str:
        return "team" if self.team_id else "workflow" if self.workflow_id else "agent"


class Run(models.Model):
    """One message in, one answer out. A row per run, so concurrent runs never overwrite each other."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    # What ran: an agent, a team or a workflow (exactly one). A team's member runs and a workflow's
    # step runs are child runs of the team's or workflow's run, in the same session.
    agent = models.ForeignKey("agents_app.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    team = models.ForeignKey("agents_app.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    workflow = models.ForeignKey(
        "agents_app.Workflow", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    parent_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="child_runs",
        help_text="The team or workflow run this member or step run belongs to.",
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    input = models.TextField()
    output = models.TextField(blank=True)
    output_json = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_type = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    time_to_first_token = models.FloatField(null=True, blank=True, help_text="Seconds.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    events = models.JSONField(
        null=True, blank=True, help_text="Every event the run emitted, stored when it ends, for clients that resume."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["session", "status", "-created_at"], name="run_session_history"),
            models.Index(fields=["status", "created_at"], name="run_status_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=ONE_COMPONENT, name="run_one_component"),
        ]

    def __str__(self) -> str:
        return f"Run {self.id} ({self.status})"

    @property
    def component_type(self) -> str:
        return "team" if self.team_id else "workflow" if self.workflow_id else "agent"

    @property
    def component_id(self) -> str:
        """The agent's, team's or workflow's slug (select_related them to avoid a query)."""
        component = self.team if self.team_id else self.workflow if self.workflow_id else self.agent
        return component.slug if component is not None else ""


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        TOOL = "tool", "Tool"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200, blank=True, help_text="The tool's name, on tool messages.")
    position = models.PositiveSmallIntegerField(help_text="Order within the run.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="message_unique_position")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
