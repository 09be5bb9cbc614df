"""Serializers of the agents API. Input serializers validate; output serializers shape JSON."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents_app.conf import agentos_settings
from agents_app.models import Agent, ModelConfig
from agents_app.tools.registry import tool_registry


class ModelConfigSerializer(serializers.ModelSerializer):
    """Staff only. The API key can be set but is never returned: `has_api_key` says whether one is."""

    api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500, style={"input_type": "password"}
    )
    has_api_key = serializers.SerializerMethodField()

    class Meta:
        model = ModelConfig
        fields = [
            "id",
            "name",
            "provider",
            "base_url",
            "model_id",
            "api_key",
            "has_api_key",
            "temperature",
            "max_tokens",
            "timeout_seconds",
            "max_retries",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_has_api_key(self, obj: ModelConfig) -> bool:
        return bool(obj.api_key)


class ToolNamesField(serializers.ListField):
    child = serializers.CharField(max_length=64)

    def to_internal_value(self, data: Any) -> list[str]:
        names = super().to_internal_value(data)
        unknown = sorted(set(names) - set(tool_registry.names()))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown tools: {', '.join(unknown)}. Registered: {', '.join(tool_registry.names())}."
            )
        return list(dict.fromkeys(names))


class AgentSerializer(serializers.ModelSerializer):
    """What any user sees of an agent: enough to pick one and know what it does."""

    agent_id = serializers.CharField(source="slug", read_only=True)
    model = serializers.SerializerMethodField()
    tools = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Agent
        fields = [
            "agent_id",
            "name",
            "description",
            "model",
            "tools",
            "output_schema",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_model(self, obj: Agent) -> dict[str, str]:
        return {"name": obj.model.name, "provider": obj.model.provider, "model_id": obj.model.model_id}


class AgentAdminSerializer(serializers.ModelSerializer):
    """What staff read and write: every setting of the agent."""

    agent_id = serializers.SlugField(source="slug", max_length=100)
    model = serializers.PrimaryKeyRelatedField(queryset=ModelConfig.objects.all())
    tools = ToolNamesField(required=False)
    output_schema = serializers.JSONField(required=False, allow_null=True)

    class Meta:
        model = Agent
        fields = [
            "agent_id",
            "name",
            "description",
            "model",
            "instructions",
            "tools",
            "output_schema",
            "history_runs",
            "max_tool_calls",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[Any] = []

    def validate_agent_id(self, value: str) -> str:
        qs = Agent.objects.filter(slug=value)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("An agent with this id already exists.")
        return value

    def validate_output_schema(self, value: Any) -> Any:
        from django.core.exceptions import ValidationError as DjangoValidationError

        from agents_app.models import validate_json_schema

        try:
            validate_json_schema(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value or None


class RunInputSerializer(serializers.Serializer):
    message = serializers.CharField(
        trim_whitespace=False,
        help_text="The user's message. Limit: AGENTOS['MAX_MESSAGE_CHARS'] characters (default 32000).",
    )
    session_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="Continue this session; omit to start a new one."
    )
    stream = serializers.BooleanField(
        default=False, help_text="Answer as Server-Sent Events instead of one JSON object."
    )

    def validate_message(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        limit = int(agentos_settings.MAX_MESSAGE_CHARS)
        if len(value) > limit:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {limit} characters (it has {len(value)})."
            )
        return value


class RunMetricsSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    time_to_first_token = serializers.FloatField(allow_null=True)
    duration = serializers.FloatField()


class RunErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class RunOutputSerializer(serializers.Serializer):
    """Documentation of the non-streaming run response (agno's RunOutput field names)."""

    run_id = serializers.UUIDField()
    agent_id = serializers.CharField()
    agent_name = serializers.CharField()
    session_id = serializers.UUIDField()
    user_id = serializers.IntegerField()
    content = serializers.JSONField(
        allow_null=True, help_text="Text, or the JSON object when the agent has an output schema."
    )
    content_type = serializers.ChoiceField(choices=["str", "json"])
    status = serializers.ChoiceField(choices=["completed", "error"])
    model = serializers.CharField()
    model_provider = serializers.CharField()
    created_at = serializers.IntegerField(help_text="Unix time, seconds.")
    metrics = RunMetricsSerializer()
    error = RunErrorSerializer(required=False)
