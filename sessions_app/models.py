"""Conversations as data: a session holds runs; a run holds the messages it added."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# Exactly one of agent, team and workflow is set (on sessions and on runs).
ONE_COMPONENT = (
    models.Q(agent__isnull=False, team__isnull=True, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=False, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=True, workflow__isnull=False)
)


def _component_fk(model: str, related_name: str) -> models.ForeignKey:
    """The optional link of a session or run to the agent, team or workflow it belongs to."""
    return models.ForeignKey(
        f"agents_app.{model}", null=True, blank=True, on_delete=models.PROTECT, related_name=related_name
    )


class ComponentMixin:
    """What a session or run belongs to, by which of its agent, team and workflow is set."""

    @property
    def component_type(self) -> str:
        return "team" if self.team_id else "workflow" if self.workflow_id else "agent"  # type: ignore[attr-defined]


class Session(ComponentMixin, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_sessions")
    # A session belongs to exactly one agent, team or workflow.
    agent = _component_fk("Agent", "sessions")
    team = _component_fk("Team", "sessions")
    workflow = _component_fk("Workflow", "sessions")
    name = models.CharField(max_length=200, blank=True)
    state = models.JSONField(
        default=dict,
        blank=True,
        help_text="The session state: starts as the agent's initial state; tools and hooks change it during runs.",
    )
    summary = models.TextField(
        blank=True,
        help_text="A summary of the session's older runs, sent to the model instead of them once they leave "
        "the history window.",
    )
    summary_until = models.DateTimeField(
        null=True, blank=True, help_text="The summary covers the completed runs created up to this time."
    )
    summary_updated_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(
        default=dict,
        blank=True,
        help_text="The client's own data about the session (agno's session metadata); the site never reads it.",
    )
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="An ended session is kept and readable but takes no more messages."
    )
    is_eval = models.BooleanField(
        default=False, help_text="Holds the runs of an eval (agents_app.evals): kept out of users' session lists."
    )
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
    def ended(self) -> bool:
        return self.ended_at is not None


class Run(ComponentMixin, models.Model):
    """One message in, one answer out. A row per run, so concurrent runs never overwrite each other."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"
        # Waiting for a person to decide on its tool calls (docs/human-in-the-loop.md); continued
        # (back to running) from any process, or expired (an error of type approval_expired).
        PAUSED = "paused", "Paused"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    # What ran: an agent, a team or a workflow (exactly one). A team's member runs and a workflow's
    # step runs are child runs of the team's or workflow's run, in the same session.
    agent = _component_fk("Agent", "runs")
    team = _component_fk("Team", "runs")
    workflow = _component_fk("Workflow", "runs")
    parent_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="child_runs",
        help_text="The team or workflow run this member or step run belongs to.",
    )
    # The version of its agent's, team's or workflow's configuration it ran with (immutable; set
    # when it starts, agents_app.versions): later edits never change what it says it used.
    config_version = models.ForeignKey(
        "agents_app.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        help_text="The configuration version it ran with.",
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
    cache_read_tokens = models.PositiveIntegerField(
        default=0, help_text="Of the input tokens, those the provider read from its prompt cache."
    )
    # Money: the model configs' prices per million tokens times this run's tokens. `cost` is this
    # run's own model calls (its parser and fallback models included), so adding up runs never counts
    # a call twice; `total_cost` adds its member or step runs (what a team or workflow run cost).
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    total_cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    tree_tokens = models.PositiveBigIntegerField(
        default=0, help_text="Tokens of this run and of its member or step runs (a team's or workflow's in all)."
    )
    time_to_first_token = models.FloatField(null=True, blank=True, help_text="Seconds.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    events = models.JSONField(
        null=True,
        blank=True,
        help_text="Every event the run emitted, for clients that resume: saved while it streams "
        "(every RUN_CHECKPOINT_SECONDS) and when it ends.",
    )
    # The server process executing it (ServerProcess.id; empty: none known). Not a foreign key: a
    # process's row comes and goes with its heartbeat, a run's owner is history.
    owner = models.CharField(max_length=32, blank=True, default="", editable=False)
    # A paused run: what continuing it needs (the messages so far, the tool calls used, its counts),
    # written by the engine when it pauses, read by whichever process continues it; and when it
    # expires (its agent's approval timeout). `resumed_at`: when it was last continued (a continued
    # run counts as started then, for the checks that look at a running run's age).
    resume_state = models.JSONField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="A paused run expires then.")
    resumed_at = models.DateTimeField(null=True, blank=True, help_text="When the paused run was last continued.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["session", "status", "-created_at"], name="run_session_history"),
            models.Index(fields=["status", "created_at"], name="run_status_recent"),
            models.Index(fields=["status", "expires_at"], name="run_status_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=ONE_COMPONENT, name="run_one_component"),
        ]

    def __str__(self) -> str:
        return f"Run {self.id} ({self.status})"

    @property
    def component_id(self) -> str:
        """The agent's, team's or workflow's slug (select_related them to avoid a query)."""
        component = self.team if self.team_id else self.workflow if self.workflow_id else self.agent
        return component.slug if component is not None else ""


class ToolApproval(models.Model):
    """One tool call a paused run waits on, and what a person decided (the audit trail): who, when,
    approve or reject, the arguments approved, a note, an external tool's result. Rows are written
    when the run pauses; a decision is written once (pending -> decided, a conditional update), as
    the run is continued; an expired or cancelled run's pending rows are marked so, never run."""

    class Requirement(models.TextChoices):
        CONFIRMATION = "confirmation", "Confirmation"
        USER_INPUT = "user_input", "User input"
        EXTERNAL_EXECUTION = "external_execution", "External execution"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_approvals")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order within the run.")
    tool_call_id = models.CharField(max_length=200)
    tool_name = models.CharField(max_length=64)
    requirement = models.CharField(max_length=24, choices=Requirement.choices)
    tool_args = models.JSONField(default=dict, blank=True, help_text="The arguments the model chose.")
    user_input_fields = models.JSONField(default=list, blank=True, help_text="The arguments a user fills in.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approved_args = models.JSONField(null=True, blank=True, help_text="The arguments the tool ran with.")
    result = models.TextField(blank=True, help_text="An externally executed tool's result, as sent back.")
    note = models.TextField(blank=True, help_text="The decider's note (a rejection's reason).")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(
        max_length=16, blank=True, help_text="Where it was decided: api, websocket, agno, admin, python, expiry."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]
        indexes = [models.Index(fields=["status", "created_at"], name="toolapproval_status_recent")]
        permissions = [("approve_tool_calls", "Can decide on tool calls of other users' paused runs")]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.requirement}, {self.status}) of run {self.run_id}"


def _image_path(instance: RunImage, filename: str) -> str:
    """Images are filed by day and run; the name is ours (the uploader's name is kept in `name`)."""
    day = timezone.now().strftime("%Y/%m/%d")
    return f"agentos/images/{day}/{instance.run_id}/{instance.position}{instance.extension}"


class RunImage(models.Model):
    """An image sent with a run's message: uploaded (kept through Django's storage API) or given by
    URL (kept as the URL). The model receives it as an image part of the user's message."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="images")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order within the message.")
    file = models.FileField(upload_to=_image_path, blank=True, max_length=300)
    url = models.URLField(max_length=2000, blank=True, help_text="An image given by URL (not downloaded).")
    name = models.CharField(max_length=255, blank=True, help_text="The uploader's file name.")
    mime_type = models.CharField(max_length=100, blank=True)
    size = models.PositiveIntegerField(default=0, help_text="Bytes (uploads only).")
    detail = models.CharField(max_length=8, blank=True, help_text="OpenAI's image detail: auto, low or high.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="runimage_unique_position"),
            models.CheckConstraint(
                condition=(~models.Q(file="") & models.Q(url="")) | (models.Q(file="") & ~models.Q(url="")),
                name="runimage_file_xor_url",
            ),
        ]

    def __str__(self) -> str:
        return f"image {self.position} of run {self.run_id}"

    @property
    def extension(self) -> str:
        return {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}.get(
            self.mime_type, ""
        )


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


def validate_topics(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() and "|" not in t for t in value):
        raise ValidationError('Topics must be a list of words, e.g. ["food", "travel"] (no "|").')


class Memory(models.Model):
    """Something an agent remembers about a user, across sessions. `agent` empty: shared by every
    agent of the user (agents with memory scope "user"); set: only that agent's (scope "agent")."""

    class Source(models.TextChoices):
        AGENTIC = "agentic", "Written by the agent with its memory tools"
        AUTOMATIC = "automatic", "Extracted after a run by the memory manager"
        USER = "user", "Written by the user through the API"
        ADMIN = "admin", "Written by staff in the admin"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_memories")
    agent = models.ForeignKey(
        "agents_app.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="memories",
        help_text="Empty: every agent of this user with memory scope 'user' sees it.",
    )
    memory = models.TextField(help_text="One fact about the user, in a sentence.")
    topics = models.JSONField(
        default=list, blank=True, validators=[validate_topics], help_text='A list of short topic words, e.g. ["food"].'
    )
    # "|food|travel|": the topics lower-cased, so a topic filter is one portable, exact SQL match
    # (JSON containment is not available on SQLite). Kept in step by save().
    topics_index = models.TextField(blank=True, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.USER)
    source_run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="memories_written"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "memories"
        indexes = [models.Index(fields=["user", "agent", "-updated_at"], name="memory_user_recent")]
        constraints = [
            models.CheckConstraint(condition=~models.Q(memory=""), name="memory_not_empty"),
        ]

    def __str__(self) -> str:
        return self.memory[:80]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.topics_index = topics_index(self.topics)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "topics" in update_fields:
            kwargs["update_fields"] = {*update_fields, "topics_index"}
        super().save(*args, **kwargs)


def topics_index(topics: Any) -> str:
    names = [str(t).strip().lower() for t in topics or [] if str(t).strip()] if isinstance(topics, list) else []
    return "|" + "|".join(names) + "|" if names else ""


class ServerProcess(models.Model):
    """A process of the deployment and its heartbeat. Server processes (sessions_app.liveness) execute
    runs: a running run whose owner stopped beating is taken over by another process
    (agents_app.runtime): stored as interrupted, keeping what it streamed, with a terminal event
    resumers receive. Celery workers and beat beat too (agents_app.health), so that any server
    process's `/readyz` can tell whether one of them is alive; a run's owner is never one of those."""

    class Kind(models.TextChoices):
        SERVER = "server", "server"
        WORKER = "worker", "Celery worker"
        BEAT = "beat", "Celery beat"

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SERVER)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "server process"
        verbose_name_plural = "server processes"

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.id})"


class ApiToken(models.Model):
    """A named API token of a user (docs/api.md#api-tokens), sent like a DRF token
    (`Authorization: Bearer <token>`). Only a SHA-256 digest of the token is stored, with its first
    characters (`prefix`, shown in lists and used to find the row); it may be limited to some agents,
    teams and workflows (by slug; none listed: all of them) and to reads, it expires, it is revoked
    by setting `revoked_at` (the row stays, for the record), and its last use is recorded at most
    once a minute (sessions_app.tokens)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'support widget'.")
    prefix = models.CharField(
        max_length=24, unique=True, editable=False, help_text="The token's first characters, to recognise it."
    )
    digest = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the whole token, in hex.")
    read_only = models.BooleanField(
        default=False, help_text="Reads only: no runs, no changes (it may still revoke itself)."
    )
    agents = models.JSONField(default=list, blank=True, help_text="Slugs of the agents it may use.")
    teams = models.JSONField(default=list, blank=True, help_text="Slugs of the teams it may use.")
    workflows = models.JSONField(
        default=list,
        blank=True,
        help_text="Slugs of the workflows it may use. None listed in all three lists: every one its user may use.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_recent")]
        constraints = [models.CheckConstraint(condition=~models.Q(name=""), name="apitoken_name_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def restricted(self) -> bool:
        """Limited to the agents, teams and workflows it lists (else: all that its user may use)."""
        return bool(self.agents or self.teams or self.workflows)


class MemoryOptimization(models.Model):
    """One consolidation of a user's memories by a model (agno's optimize-memories): asked for
    through the API, done by a Celery task, kept as the record of what it did."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memory_optimizations")
    model_config = models.ForeignKey(
        "agents_app.ModelConfig", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    apply = models.BooleanField(default=True, help_text="Replace the memories (else only propose).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    memories_before = models.PositiveIntegerField(default=0)
    memories_after = models.PositiveIntegerField(default=0)
    tokens_before = models.PositiveIntegerField(default=0)
    tokens_after = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=list, blank=True, help_text="The consolidated memories.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user_id} {self.status} {self.created_at:%Y-%m-%d %H:%M}"
