"""Evals as data: a suite of cases run against an agent, team or workflow, and the record of each
eval run and of each case's result (docs/evals.md).

Kept in a module of its own, imported by agents_app.models so Django registers the models, and
importing nothing of agents_app itself (foreign keys by string), so no import circle forms.
What checks a case against the tool registry or a suite against its target lives in
agents_app.evals.services (the admin's forms and the API's serializers call it).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# Exactly one of agent, team and workflow is set (as on sessions and runs).
_ONE_TARGET = (
    models.Q(agent__isnull=False, team__isnull=True, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=False, workflow__isnull=True)
    | models.Q(agent__isnull=True, team__isnull=True, workflow__isnull=False)
)


def _target_fk(model: str) -> models.ForeignKey:
    return models.ForeignKey(
        f"agents_app.{model}", null=True, blank=True, on_delete=models.CASCADE, related_name="eval_suites"
    )


SUITE_FIELDS = ["slug", "name", "description", "agent", "team", "workflow", "pinned_version", "judge_model", "schedule"]
"""A suite's editable fields: the admin form's and the REST serializer's (which adds its read-only ones)."""
CASE_FIELDS = [
    "position",
    "name",
    "kind",
    "input",
    "expected_output",
    "criteria",
    "scoring",
    "threshold",
    "expected_tool_calls",
    "allow_additional_tool_calls",
    "iterations",
    "warmup",
]
"""A case's editable fields, likewise."""


class EvalSchedule(models.TextChoices):
    NONE = "", "Not scheduled"
    HOURLY = "hourly", "Every hour"
    NIGHTLY = "nightly", "Every night"
    WEEKLY = "weekly", "Every week"


class EvalSuite(models.Model):
    """Cases run together against one agent, team or workflow; its score is the share of cases passed."""

    slug = models.SlugField(max_length=100, unique=True, help_text="The suite's id in URLs and on the command line.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    agent = _target_fk("Agent")
    team = _target_fk("Team")
    workflow = _target_fk("Workflow")
    pinned_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Run against this saved version of the target (configuration versions; not checked yet).",
    )
    judge_model = models.ForeignKey(
        "agents_app.ModelConfig",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text='The model that judges answers; empty: AGENTOS["EVALS_JUDGE_MODEL"], else the target\'s model.',
    )
    schedule = models.CharField(max_length=16, choices=EvalSchedule.choices, default="", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [models.CheckConstraint(condition=_ONE_TARGET, name="evalsuite_one_target")]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def target_kind(self) -> str:
        return "team" if self.team_id else "workflow" if self.workflow_id else "agent"

    @property
    def target(self) -> models.Model | None:
        return self.agent or self.team or self.workflow


class EvalCase(models.Model):
    class Kind(models.TextChoices):
        ACCURACY = "accuracy", "Accuracy (a judge compares with the expected output, 1-10)"
        AGENT_AS_JUDGE = "agent_as_judge", "Agent as judge (criteria in words)"
        RELIABILITY = "reliability", "Reliability (the expected tool calls)"
        PERFORMANCE = "performance", "Performance (latency, tokens, cost, memory)"

    class Scoring(models.TextChoices):
        BINARY = "binary", "Pass/fail"
        NUMERIC = "numeric", "Numeric 1-10 with a threshold"

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ACCURACY)
    input = models.TextField(help_text="The message sent to the target.")
    expected_output = models.TextField(blank=True, help_text="Accuracy: the answer expected.")
    criteria = models.TextField(blank=True, help_text="Agent as judge: what a good answer does, in words.")
    scoring = models.CharField(max_length=8, choices=Scoring.choices, default=Scoring.NUMERIC)
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Accuracy and numeric judging: the lowest passing mean score (default 7). "
        "Performance: the highest passing p95 latency in seconds (default: none).",
    )
    expected_tool_calls = models.JSONField(
        default=list,
        blank=True,
        help_text='Reliability: [{"name": "calculator", "arguments": {"expression": "2+2"}}, ...] '
        "(arguments optional: those given must match).",
    )
    allow_additional_tool_calls = models.BooleanField(
        default=False, help_text="Reliability: calls of other tools are allowed (only the expected ones must be made)."
    )
    iterations = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(50)])
    warmup = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(20)], help_text="Performance: runs before measuring."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["suite", "position", "pk"]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display().split(' (')[0]} case {self.pk}"


class EvalStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    PARTIAL = "partial"
    ERROR = "error"
    CANCELLED = "cancelled"


class EvalRun(models.Model):
    """One run of a suite (or, from agno's API, of one case): its progress, status and score."""

    class Trigger(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        COMMAND = "command"
        SCHEDULE = "schedule"
        AGNO = "agno"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="eval_runs")
    name = models.CharField(max_length=200, blank=True, help_text="agno's eval run name.")
    status = models.CharField(max_length=16, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.API)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cases_total = models.PositiveIntegerField(default=0)
    cases_done = models.PositiveIntegerField(default=0)
    cases_passed = models.PositiveIntegerField(default=0)
    score = models.FloatField(null=True, blank=True, help_text="Percent of cases passed.")
    previous_score = models.FloatField(null=True, blank=True, help_text="The suite's last finished score.")
    regressed = models.BooleanField(default=False, help_text="The score is below the suite's last run's.")
    judge_model = models.CharField(max_length=200, blank=True, help_text="The judge's model id.")
    model_override = models.ForeignKey(
        "agents_app.ModelConfig",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The target ran with this model config instead of its own (a comparison).",
    )
    target_model = models.CharField(max_length=200, blank=True, help_text="The model id the target ran with.")
    config_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The target's configuration version its runs ran as (the suite's pinned one, or one chosen "
        "for this eval run, e.g. to compare two versions); empty: the target as it was.",
    )
    eval_type = models.CharField(max_length=16, blank=True, help_text="agno's eval_type, for one-case eval runs.")
    eval_input = models.JSONField(default=dict, blank=True, help_text="agno's eval_input.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["suite", "-created_at"], name="evalrun_suite_recent")]

    def __str__(self) -> str:
        return f"{self.suite.slug} eval run {self.id}"

    @property
    def finished(self) -> bool:
        return self.status not in (EvalStatus.QUEUED, EvalStatus.RUNNING)


class EvalCaseResult(models.Model):
    """What one case did in one eval run: input, expected, actual, score, reason, tool calls, timing."""

    eval_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvalCase, null=True, blank=True, on_delete=models.SET_NULL, related_name="results")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=EvalCase.Kind.choices)
    status = models.CharField(max_length=16, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    input = models.TextField(blank=True)
    expected = models.TextField(blank=True, help_text="Expected output, criteria or tool calls, as the case says.")
    actual = models.TextField(blank=True, help_text="The target's answer (the last iteration's).")
    score = models.FloatField(null=True, blank=True, help_text="Mean over iterations (1-10; 0/1 for pass/fail).")
    passed = models.BooleanField(null=True)
    reason = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True, help_text="The calls the target made.")
    stats = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per iteration scores; mean/min/max/stdev; latency p50/p95, TTFT, tokens, cost, memory.",
    )
    run_ids = models.JSONField(default=list, blank=True, help_text="The target's runs (eval sessions).")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds for the whole case.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["eval_run", "position", "pk"]

    def __str__(self) -> str:
        return f"{self.name or self.kind} in {self.eval_run_id}"
