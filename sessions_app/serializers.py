from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sessions_app.models import Memory, Message, Run, RunImage, Session
from sessions_app.services import MEMORY_MAX_CHARS, TOPIC_MAX_CHARS, TOPICS_MAX


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["role", "content", "tool_calls", "tool_call_id", "name", "position", "created_at"]


def cost_field(**kwargs: Any) -> serializers.DecimalField:
    """Money as a JSON number (what run events carry too), exact to the stored 10 decimal places,
    in the currency of the model configs' prices."""
    return serializers.DecimalField(max_digits=20, decimal_places=10, coerce_to_string=False, read_only=True, **kwargs)


class RunImageSerializer(serializers.ModelSerializer):
    """An image sent with the run's message. `url`: where to get it: for an upload, this API's
    authenticated GET /api/runs/<run_id>/images/<position> (absolute when the request is known); for
    an image given by URL, that URL."""

    url = serializers.SerializerMethodField()
    uploaded = serializers.SerializerMethodField(help_text="Stored here (an upload), or given by URL.")

    class Meta:
        model = RunImage
        fields = ["position", "name", "mime_type", "size", "detail", "uploaded", "url"]
        read_only_fields = fields

    def get_uploaded(self, image: RunImage) -> bool:
        return bool(image.file)

    def get_url(self, image: RunImage) -> str:
        if not image.file:
            return image.url
        path = reverse("sessions_app:run-image", kwargs={"run_id": image.run_id, "position": image.position})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class StoredRunMetricsSerializer(serializers.Serializer):
    """A stored run's token counts, cost and timings (seconds); timings are null until the run ends."""

    input_tokens = serializers.IntegerField(read_only=True)
    output_tokens = serializers.IntegerField(read_only=True)
    total_tokens = serializers.IntegerField(read_only=True)
    cache_read_tokens = serializers.IntegerField(
        read_only=True, help_text="Of the input tokens, those the provider read from its prompt cache."
    )
    cost = cost_field(
        help_text="What this run's own model calls cost (its parser and fallback models included; not its member "
        "or step runs, which list their own): adding up runs counts every call once."
    )
    total_cost = cost_field(
        help_text="This run's cost plus its member or step runs' (what a team or workflow run cost)."
    )
    time_to_first_token = serializers.FloatField(read_only=True, allow_null=True)
    duration = serializers.FloatField(read_only=True, allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    session_id = serializers.UUIDField(read_only=True)
    agent_id = serializers.CharField(source="agent.slug", read_only=True, allow_null=True)
    team_id = serializers.CharField(source="team.slug", read_only=True, allow_null=True)
    workflow_id = serializers.CharField(source="workflow.slug", read_only=True, allow_null=True)
    parent_run_id = serializers.UUIDField(
        read_only=True, allow_null=True, help_text="The team or workflow run this member or step run belongs to."
    )
    content = serializers.SerializerMethodField(
        help_text="The answer: text, or the JSON object when the agent has an output schema."
    )
    metrics = StoredRunMetricsSerializer(source="*", read_only=True)
    config_version = serializers.IntegerField(
        source="config_version.number",
        read_only=True,
        allow_null=True,
        help_text="The number of the configuration version of its agent, team or workflow it ran with "
        "(GET /api/{kind}s/{id}/versions/{number} for staff).",
    )
    messages = MessageSerializer(many=True, read_only=True)
    images = RunImageSerializer(
        many=True, read_only=True, help_text="The images sent with the message (the model got them with it)."
    )
    last_event_index = serializers.SerializerMethodField(
        help_text="The `event_index` of the last event stored for the run (null: none): for a paused run, its "
        "pause, what a client that continues it resumes a dropped stream after."
    )

    class Meta:
        model = Run
        fields = [
            "run_id",
            "session_id",
            "agent_id",
            "team_id",
            "workflow_id",
            "parent_run_id",
            "status",
            "input",
            "content",
            "error",
            "error_type",
            "model",
            "provider",
            "metrics",
            "config_version",
            "created_at",
            "finished_at",
            "messages",
            "images",
            "last_event_index",
        ]

    @extend_schema_field(OpenApiTypes.ANY)
    def get_content(self, run: Run) -> Any:
        return run.output_json if run.output_json is not None else run.output

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_last_event_index(self, run: Run) -> int | None:
        indexes = [e["event_index"] for e in run.events or () if isinstance(e, dict) and "event_index" in e]
        return max(indexes, default=None)


class SessionSerializer(serializers.ModelSerializer):
    session_id = serializers.UUIDField(source="id", read_only=True)
    agent_id = serializers.CharField(source="agent.slug", read_only=True, allow_null=True)
    team_id = serializers.CharField(source="team.slug", read_only=True, allow_null=True)
    workflow_id = serializers.CharField(source="workflow.slug", read_only=True, allow_null=True)
    run_count = serializers.IntegerField(read_only=True)
    cost = cost_field(
        help_text="What the session's runs cost: the sum of every run's own cost (members' and steps' too)."
    )
    name = serializers.CharField(max_length=200, allow_blank=True)

    class Meta:
        model = Session
        fields = [
            "session_id",
            "agent_id",
            "team_id",
            "workflow_id",
            "name",
            "run_count",
            "cost",
            "ended_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["ended_at"]


class SessionDetailSerializer(SessionSerializer):
    state = serializers.JSONField(read_only=True, help_text="The session state, as the runs and hooks left it.")
    summary = serializers.CharField(
        read_only=True, help_text="A summary of the older runs (agents with session summaries), or empty."
    )
    summary_updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    runs = RunSerializer(many=True, read_only=True)

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "state", "summary", "summary_updated_at", "runs"]
        read_only_fields = ["ended_at", "state", "summary", "summary_updated_at"]


class SessionRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=True)


class MemorySerializer(serializers.ModelSerializer):
    memory_id = serializers.UUIDField(source="id", read_only=True)
    agent_id = serializers.CharField(
        source="agent.slug",
        read_only=True,
        allow_null=True,
        help_text="The agent whose private memory this is; null for memories shared by the user's agents.",
    )
    source_run_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Memory
        fields = ["memory_id", "memory", "topics", "agent_id", "source", "source_run_id", "created_at", "updated_at"]
        read_only_fields = fields


class TopicsField(serializers.ListField):
    child = serializers.CharField(max_length=TOPIC_MAX_CHARS, allow_blank=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=TOPICS_MAX, **kwargs)


class MemoryCreateSerializer(serializers.Serializer):
    memory = serializers.CharField(max_length=MEMORY_MAX_CHARS)
    topics = TopicsField(required=False)
    agent_id = serializers.SlugField(
        max_length=100,
        required=False,
        allow_null=True,
        help_text="Make it private to this agent (agents with memory scope 'agent'); omit to share it.",
    )


class MemoryUpdateSerializer(serializers.Serializer):
    memory = serializers.CharField(max_length=MEMORY_MAX_CHARS, required=False)
    topics = TopicsField(required=False)
