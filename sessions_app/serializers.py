from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sessions_app.models import Message, Run, Session


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["role", "content", "tool_calls", "tool_call_id", "name", "position", "created_at"]


class RunSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    session_id = serializers.UUIDField(read_only=True)
    agent_id = serializers.CharField(source="agent.slug", read_only=True)
    content = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    messages = MessageSerializer(many=True, read_only=True)

    class Meta:
        model = Run
        fields = [
            "run_id",
            "session_id",
            "agent_id",
            "status",
            "input",
            "content",
            "error",
            "error_type",
            "model",
            "provider",
            "metrics",
            "created_at",
            "finished_at",
            "messages",
        ]

    def get_content(self, run: Run) -> Any:
        return run.output_json if run.output_json is not None else run.output

    def get_metrics(self, run: Run) -> dict[str, Any]:
        return {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "total_tokens": run.total_tokens,
            "time_to_first_token": run.time_to_first_token,
            "duration": run.duration,
        }


class SessionSerializer(serializers.ModelSerializer):
    session_id = serializers.UUIDField(source="id", read_only=True)
    agent_id = serializers.CharField(source="agent.slug", read_only=True)
    run_count = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200, allow_blank=True)

    class Meta:
        model = Session
        fields = ["session_id", "agent_id", "name", "run_count", "created_at", "updated_at"]


class SessionDetailSerializer(SessionSerializer):
    runs = RunSerializer(many=True, read_only=True)

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "state", "runs"]
        read_only_fields = ["state"]


class SessionRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=True)
