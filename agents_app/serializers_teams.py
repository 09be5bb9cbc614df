"""Serializers of the teams and workflows API: what users read of them, and (for the schema) what a
team or workflow run answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents_app.models import Team, TeamMember, Workflow, WorkflowStep
from agents_app.serializers import ModelSummarySerializer, RunErrorSerializer, RunMetricsSerializer


class TeamMemberSerializer(serializers.ModelSerializer):
    member_id = serializers.CharField(read_only=True)
    member_type = serializers.SerializerMethodField()
    name = serializers.SerializerMethodField()

    class Meta:
        model = TeamMember
        fields = ["member_id", "member_type", "name", "role", "order"]
        read_only_fields = fields

    def get_member_type(self, obj: TeamMember) -> str:
        return "team" if obj.member_team_id else "agent"

    def get_name(self, obj: TeamMember) -> str:
        return obj.member_team.name if obj.member_team_id else obj.agent.name  # type: ignore[union-attr]


class TeamSerializer(serializers.ModelSerializer):
    """What any user sees of a team: its mode, leader model and members."""

    team_id = serializers.CharField(source="slug", read_only=True)
    model = ModelSummarySerializer(read_only=True)
    members = TeamMemberSerializer(source="memberships", many=True, read_only=True)

    class Meta:
        model = Team
        fields = [
            "team_id",
            "name",
            "description",
            "mode",
            "model",
            "members",
            "max_depth",
            "max_member_calls",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WorkflowStepSerializer(serializers.ModelSerializer):
    agent_id = serializers.CharField(source="agent.slug", read_only=True, allow_null=True)
    team_id = serializers.CharField(source="team.slug", read_only=True, allow_null=True)
    steps = serializers.SerializerMethodField(help_text="The steps inside a condition or parallel step.")

    class Meta:
        model = WorkflowStep
        fields = ["name", "kind", "order", "agent_id", "team_id", "function", "args", "steps"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_steps(self, obj: WorkflowStep) -> list[dict[str, Any]]:
        children = self.context.get("children", {}).get(obj.pk, [])
        return WorkflowStepSerializer(children, many=True, context=self.context).data  # type: ignore[return-value]


class WorkflowSerializer(serializers.ModelSerializer):
    workflow_id = serializers.CharField(source="slug", read_only=True)
    steps = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = ["workflow_id", "name", "description", "steps", "is_active", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(WorkflowStepSerializer(many=True))
    def get_steps(self, obj: Workflow) -> list[dict[str, Any]]:
        rows = list(obj.steps.all())
        children: dict[int, list[WorkflowStep]] = {}
        for row in rows:
            if row.parent_id:
                children.setdefault(row.parent_id, []).append(row)
        top = [row for row in rows if not row.parent_id]
        return WorkflowStepSerializer(top, many=True, context={"children": children}).data  # type: ignore[return-value]


class MemberRunSerializer(serializers.Serializer):
    run_id = serializers.UUIDField(allow_null=True)
    member_type = serializers.ChoiceField(choices=["agent", "team"])
    member_id = serializers.CharField()
    status = serializers.CharField()
    content = serializers.JSONField(allow_null=True)
    error = RunErrorSerializer(required=False)


class TeamRunOutputSerializer(serializers.Serializer):
    """Documentation of the non-streaming team run response (agno's TeamRunOutput field names)."""

    run_id = serializers.UUIDField()
    team_id = serializers.CharField()
    team_name = serializers.CharField()
    session_id = serializers.UUIDField()
    user_id = serializers.IntegerField()
    content = serializers.CharField(allow_null=True, help_text="The team's answer (partial if it failed).")
    content_type = serializers.ChoiceField(choices=["str"])
    status = serializers.ChoiceField(choices=["completed", "error", "cancelled"])
    mode = serializers.ChoiceField(choices=Team.Mode.values)
    model = serializers.CharField(allow_blank=True)
    model_provider = serializers.CharField(allow_blank=True)
    created_at = serializers.IntegerField(help_text="Unix time, seconds.")
    metrics = RunMetricsSerializer(help_text="The leader's own model calls; member runs carry their own.")
    member_runs = MemberRunSerializer(many=True, help_text="The member runs, in the order they started.")
    error = RunErrorSerializer(required=False)


class StepResultSerializer(serializers.Serializer):
    step_name = serializers.CharField()
    step_index = serializers.JSONField(help_text="An int, or [outer, inner, ...] for nested steps.")
    step_type = serializers.ChoiceField(choices=WorkflowStep.Kind.values)
    status = serializers.CharField()
    content = serializers.JSONField(required=False, allow_null=True)
    run_id = serializers.UUIDField(required=False, allow_null=True)
    condition_result = serializers.BooleanField(required=False)


@extend_schema_field(OpenApiTypes.OBJECT)
class StateField(serializers.JSONField):
    pass


class WorkflowRunOutputSerializer(serializers.Serializer):
    """Documentation of the non-streaming workflow run response."""

    run_id = serializers.UUIDField()
    workflow_id = serializers.CharField()
    workflow_name = serializers.CharField()
    session_id = serializers.UUIDField()
    user_id = serializers.IntegerField()
    content = serializers.CharField(allow_null=True, help_text="The last step's output.")
    content_type = serializers.ChoiceField(choices=["str"])
    status = serializers.ChoiceField(choices=["completed", "error", "cancelled"])
    created_at = serializers.IntegerField(help_text="Unix time, seconds.")
    metrics = RunMetricsSerializer(help_text="Duration only: the steps' runs carry their own tokens.")
    step_results = StepResultSerializer(many=True)
    session_state = StateField(help_text="The workflow's session state after the run.")
    error = RunErrorSerializer(required=False)
    failed_step = serializers.CharField(required=False, allow_null=True)
