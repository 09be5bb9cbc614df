"""Serializers of the agents API. Input serializers validate; output serializers shape JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import build_array_type, build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents_app.hooks.registry import hook_registry
from agents_app.models import (
    HOOK_MAX_POSITION,
    HOOK_MAX_RETRIES,
    HOOK_MAX_TIMEOUT_SECONDS,
    Agent,
    AgentHook,
    AgentToolRequirement,
    HookMode,
    ModelConfig,
    Team,
    TeamMember,
    Workflow,
    WorkflowStep,
    validate_hook_list,
    validate_hook_setting,
    validate_json_schema,
    validate_tool_requirement,
)
from agents_app.secrets import UnreadableValue, key_source
from agents_app.tools.registry import tool_registry
from sessions_app.conf import agentos_settings


class StrictFieldsMixin:
    """A write body naming a field the serializer does not accept (unknown, or read-only) is a 400
    naming it, instead of DRF's default of silently ignoring it: a client that misspells a setting,
    or sets one this API does not write, learns so instead of reading a 201 and trusting it."""

    # Keys a form post may carry besides the fields (Django's CSRF token); never an error.
    ignored_keys = frozenset({"csrfmiddlewaretoken"})

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            writable = sorted(name for name, field in fields.items() if not field.read_only)
            errors: dict[str, list[str]] = {}
            for key in data:
                if key in self.ignored_keys:
                    continue
                field = fields.get(key)
                if field is None:
                    errors[str(key)] = [f"Unknown field. The writable fields are: {', '.join(writable)}."]
                elif field.read_only:
                    errors[str(key)] = ["This field is read-only."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictFieldsSchema(OpenApiSerializerExtension):
    """Document the strictness: the request bodies of strict serializers allow no other properties."""

    target_class = StrictFieldsMixin
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class ModelConfigSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """Staff only. The API key can be set but is never returned: `has_api_key` says whether one is
    stored, `key_source` where the key in use comes from (docs/models.md#api-keys)."""

    api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500, style={"input_type": "password"}
    )
    has_api_key = serializers.SerializerMethodField()
    key_source = serializers.SerializerMethodField(
        help_text=(
            'Where the key comes from, never the key: "stored", "stored (unreadable)", "env: NAME (set)", '
            '"env: NAME (unset)" or "none".'
        )
    )

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
            "api_key_env",
            "key_source",
            "temperature",
            "max_tokens",
            "timeout_seconds",
            "max_retries",
            "input_price",
            "cached_input_price",
            "output_price",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_has_api_key(self, obj: ModelConfig) -> bool:
        return bool(obj.api_key) or isinstance(obj.api_key, UnreadableValue)

    def get_key_source(self, obj: ModelConfig) -> str:
        return key_source(obj)


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


class ToolNamesFieldSchema(OpenApiSerializerFieldExtension):
    """Document the registered tool names as an enum, read when the schema is generated (tools
    register when the apps are ready, after this module may have been imported)."""

    target_class = ToolNamesField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        item = build_basic_type(OpenApiTypes.STR)
        item["enum"] = sorted(tool_registry.names())
        return build_array_type(item)


class ModelSummarySerializer(serializers.Serializer):
    """The model an agent answers with, without its endpoint or key."""

    name = serializers.CharField(read_only=True)
    provider = serializers.CharField(read_only=True)
    model_id = serializers.CharField(read_only=True)


class AgentSerializer(serializers.ModelSerializer):
    """What any user sees of an agent: enough to pick one and know what it does."""

    agent_id = serializers.CharField(source="slug", read_only=True)
    model = ModelSummarySerializer(read_only=True)
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


# JSON levels (objects and arrays) an output schema may nest: jsonschema checks a schema recursively
# and hits Python's recursion limit (a 500) from about 200 levels; answers need far fewer.
MAX_OUTPUT_SCHEMA_DEPTH = 40


def _check_json_value(value: Any, *, max_depth: int = MAX_OUTPUT_SCHEMA_DEPTH) -> None:
    """Refuse (400) a parsed JSON value that cannot be stored and used. Walks without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise serializers.ValidationError(f"Nested more than {max_depth} levels deep.")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
        elif isinstance(item, str) and "\x00" in item:
            # PostgreSQL cannot store U+0000 in text or jsonb (DRF's CharField refuses it too).
            raise serializers.ValidationError("Null characters are not allowed.")


class HookNameField(serializers.CharField):
    """The name of a registered hook (checked against the registry, with its phase, by the parent)."""


class HookNameFieldSchema(OpenApiSerializerFieldExtension):
    """Document the registered hook names as an enum, read when the schema is generated."""

    target_class = HookNameField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        item = build_basic_type(OpenApiTypes.STR)
        item["enum"] = hook_registry.names()
        return item


class HookRowSerializer(StrictFieldsMixin, serializers.Serializer):
    """One attached hook; its place in the list is its order in the phase."""

    hook = HookNameField(max_length=100, help_text="A hook registered in code with @hook.")
    mode = serializers.ChoiceField(
        choices=HookMode.choices,
        default=HookMode.DEFAULT,
        help_text="Where it runs: its default (the decorator's), inline, or in the background. Guardrails: inline.",
    )
    max_retries = serializers.IntegerField(
        min_value=0,
        max_value=HOOK_MAX_RETRIES,
        allow_null=True,
        default=None,
        help_text="Retries after a failed attempt; null: the hook's own.",
    )
    timeout_seconds = serializers.FloatField(
        min_value=0.1,
        max_value=HOOK_MAX_TIMEOUT_SECONDS,
        allow_null=True,
        default=None,
        help_text="Seconds one attempt may take; null: the hook's own.",
    )


def validate_hook_rows(phase: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's side of the admin's validation (the same functions): each row's hook registered for
    the phase and its mode allowed, each hook once. Errors are keyed by the row's index, as DRF keys
    the errors of the rows' own fields."""
    problems: dict[int, dict[str, list[str]]] = {}
    for index, row in enumerate(rows):
        if "hook" not in row:  # a PATCH makes the rows' fields optional; a row still names its hook
            problems[index] = {"hook": ["This field is required."]}
            continue
        try:
            # (A PATCH skips the row's defaults: a missing mode is the default one.)
            validate_hook_setting(phase=phase, hook=row["hook"], mode=row.get("mode", HookMode.DEFAULT))
        except DjangoValidationError as exc:
            problems[index] = exc.message_dict
    if problems:
        raise serializers.ValidationError(problems)
    try:
        validate_hook_list(phase=phase, hooks=[row["hook"] for row in rows])
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None
    return rows


class ToolRequirementRowSerializer(StrictFieldsMixin, serializers.Serializer):
    """One tool-requirement override of an agent (docs/human-in-the-loop.md)."""

    tool = serializers.CharField(max_length=64, help_text="A tool registered in code with @tool.")
    requirement = serializers.ChoiceField(
        choices=AgentToolRequirement.Kind.choices,
        help_text="What a call needs from a person before it runs, replacing the tool's own: none, confirmation, "
        "user_input or external_execution.",
    )
    user_input_fields = serializers.ListField(
        child=serializers.CharField(max_length=100),
        default=list,
        max_length=64,
        help_text="For user_input: the arguments the user fills in (hidden from the model).",
    )


def validate_tool_requirement_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The admin inline's rules (the same function), errors keyed by the row's index; a tool once."""
    problems: dict[int, dict[str, list[str]]] = {}
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if "tool" not in row or "requirement" not in row:
            problems[index] = {k: ["This field is required."] for k in ("tool", "requirement") if k not in row}
            continue
        try:
            validate_tool_requirement(
                tool=row["tool"], requirement=row["requirement"], user_input_fields=row.get("user_input_fields", [])
            )
        except DjangoValidationError as exc:
            problems[index] = exc.message_dict
            continue
        if row["tool"] in seen:
            problems[index] = {"tool": [f"Tool {row['tool']} is listed twice."]}
        seen.add(row["tool"])
    if problems:
        raise serializers.ValidationError(problems)
    return rows


HOOK_LIST_HELP = (
    "The hooks that run {when}, in order (the list order is the order). Replaces the whole list when "
    "written; omit it to leave the hooks as they are."
)


class AgentAdminSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """What staff read and write: every setting of the agent. Unknown or read-only fields in a write
    are refused (400)."""

    agent_id = serializers.SlugField(source="slug", max_length=100)
    model = serializers.PrimaryKeyRelatedField(queryset=ModelConfig.objects.all())
    tools = ToolNamesField(required=False)
    output_schema = serializers.JSONField(required=False, allow_null=True)
    initial_session_state = serializers.JSONField(required=False)
    memory_model = serializers.PrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(), required=False, allow_null=True
    )
    parser_model = serializers.PrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(),
        required=False,
        allow_null=True,
        help_text="With an output schema: a model that turns the agent's free answer into the schema.",
    )
    fallback_models = serializers.ListField(
        child=serializers.PrimaryKeyRelatedField(queryset=ModelConfig.objects.all()),
        required=False,
        max_length=10,
        source="fallback_model_list",
        help_text=(
            "Model config ids asked in this order when the model fails in a way another could cure (5xx, 429, a "
            "timeout, a broken connection). A write replaces the whole list."
        ),
    )
    pre_hooks = HookRowSerializer(
        many=True,
        required=False,
        max_length=HOOK_MAX_POSITION + 1,
        source="pre_hook_rows",
        help_text=HOOK_LIST_HELP.format(when="before the model (they see, and may rewrite or refuse, the message)"),
    )
    post_hooks = HookRowSerializer(
        many=True,
        required=False,
        max_length=HOOK_MAX_POSITION + 1,
        source="post_hook_rows",
        help_text=HOOK_LIST_HELP.format(when="after the model (they see, and may rewrite or refuse, the answer)"),
    )
    tool_requirements = ToolRequirementRowSerializer(
        many=True,
        required=False,
        max_length=256,
        source="tool_requirement_rows",
        help_text="Overrides of what calls of the agent's tools need from a person (a tool without a row: what its "
        "code says). A write replaces the whole list.",
    )

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
            "parser_model",
            "fallback_models",
            "pre_hooks",
            "post_hooks",
            "tool_requirements",
            "approval_timeout_seconds",
            "paused_session_policy",
            "busy_session_policy",
            "history_runs",
            "history_max_chars",
            "session_summaries",
            "initial_session_state",
            "memory_mode",
            "memory_scope",
            "memory_context_items",
            "memory_context_chars",
            "memory_model",
            "memory_hook_mode",
            "summary_hook_mode",
            "max_tool_calls",
            "max_model_calls",
            "max_run_tokens",
            "max_run_seconds",
            "rate_limit",
            "access",
            "allowed_users",
            "allowed_groups",
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

    def validate_pre_hooks(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return validate_hook_rows(AgentHook.Phase.PRE, value)

    def validate_post_hooks(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return validate_hook_rows(AgentHook.Phase.POST, value)

    def validate_tool_requirements(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return validate_tool_requirement_rows(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> Any:
            return attrs[name] if name in attrs else getattr(self.instance, name, None)

        if current("parser_model") is not None and not current("output_schema"):
            raise serializers.ValidationError({"parser_model": ["A parser model needs an output schema."]})
        fallbacks = attrs.get("fallback_model_list")
        if fallbacks is not None:
            ids = [m.pk for m in fallbacks]
            if len(set(ids)) != len(ids):
                raise serializers.ValidationError({"fallback_models": ["Each model may be listed once."]})
            main = current("model")
            if main is not None and main.pk in ids:
                raise serializers.ValidationError(
                    {"fallback_models": ["The agent's own model cannot be its fallback."]}
                )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Agent:
        hooks = self._pop_hooks(validated_data)
        fallbacks = validated_data.pop("fallback_model_list", None)
        requirements = validated_data.pop("tool_requirement_rows", None)
        with transaction.atomic():
            agent = self._save_fallbacks(self._save_hooks(super().create(validated_data), hooks), fallbacks)
            return self._save_tool_requirements(agent, requirements)

    def update(self, instance: Agent, validated_data: dict[str, Any]) -> Agent:
        hooks = self._pop_hooks(validated_data)
        fallbacks = validated_data.pop("fallback_model_list", None)
        requirements = validated_data.pop("tool_requirement_rows", None)
        with transaction.atomic():
            agent = self._save_fallbacks(self._save_hooks(super().update(instance, validated_data), hooks), fallbacks)
            return self._save_tool_requirements(agent, requirements)

    @staticmethod
    def _save_tool_requirements(agent: Agent, rows: list[dict[str, Any]] | None) -> Agent:
        from agents_app.services import tool_requirements_replace

        if rows is not None:
            tool_requirements_replace(agent=agent, rows=rows)
            getattr(agent, "_prefetched_objects_cache", {}).pop("tool_requirements", None)
        return agent

    @staticmethod
    def _save_fallbacks(agent: Agent, models: list[ModelConfig] | None) -> Agent:
        from agents_app.services import fallbacks_replace

        if models is not None:
            fallbacks_replace(owner=agent, models=models)
            getattr(agent, "_prefetched_objects_cache", {}).pop("fallbacks", None)
        return agent

    @staticmethod
    def _pop_hooks(validated_data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        phases = {"pre_hook_rows": AgentHook.Phase.PRE, "post_hook_rows": AgentHook.Phase.POST}
        return {phase: validated_data.pop(key) for key, phase in phases.items() if key in validated_data}

    @staticmethod
    def _save_hooks(agent: Agent, hooks: dict[str, list[dict[str, Any]]]) -> Agent:
        from agents_app.services import hooks_replace

        for phase, rows in hooks.items():
            hooks_replace(owner=agent, phase=phase, rows=rows)
        if hooks:
            # The rows read back are the new ones, not those prefetched with the agent.
            getattr(agent, "_prefetched_objects_cache", {}).pop("hooks", None)
        return agent

    def validate_initial_session_state(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError('Must be a JSON object, e.g. {"cart": []}.')
        _check_json_value(value)
        return value

    def validate_output_schema(self, value: Any) -> Any:
        _check_json_value(value)
        try:
            validate_json_schema(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value or None


# A pattern, not an enum: drf-spectacular would name the enum after each field that uses it.
@extend_schema_field({"type": "string", "pattern": "^(auto|low|high)$"})
class ImageDetailField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=["auto", "low", "high"], **kwargs)


class ImageSpecSerializer(StrictFieldsMixin, serializers.Serializer):
    """One image of a run's message: `url` (an http(s) URL, or a `data:` URL of base64 bytes) or
    `data` (the bytes, base64), not both. Checked by sessions_app.images: at most
    AGENTOS['IMAGE_MAX_BYTES'] bytes (413 `image_too_large`), bytes that are one of
    AGENTOS['IMAGE_TYPES'] (415 `unsupported_media_type`; the type is read from the bytes)."""

    url = serializers.CharField(required=False, help_text="An http(s) URL (not downloaded), or a data: URL.")
    data = serializers.CharField(required=False, help_text="The image's bytes, base64.")
    mime_type = serializers.CharField(
        required=False, max_length=100, help_text="Informational: the type is read from the bytes."
    )
    name = serializers.CharField(required=False, max_length=255, help_text="A file name to keep with the image.")
    detail = ImageDetailField(required=False, help_text="OpenAI's image detail (auto, low or high), for the model.")


@extend_schema_field(ImageSpecSerializer(many=True))
class ImagesField(serializers.Field):
    """The request's `images`, documented here and read by the view (sessions_app.images), whose
    errors are the error map's (`invalid_image`, `too_many_images`, `image_too_large`...)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class RunFormInputSerializer(serializers.Serializer):
    """A run's fields in a urlencoded form (no images: send them as JSON or multipart)."""

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


IMAGES_HELP = (
    "Images for the model, with the message (agents and teams; a workflow refuses them). At most "
    "AGENTOS['IMAGE_MAX_COUNT'] (default 4), each at most AGENTOS['IMAGE_MAX_BYTES'] (default 10 MiB)."
)


class RunInputSerializer(RunFormInputSerializer):
    """A run's fields as a JSON object."""

    images = ImagesField(required=False, help_text=IMAGES_HELP)


class RunMultipartInputSerializer(RunFormInputSerializer):
    """A run's fields as multipart/form-data, with image files."""

    images = serializers.ListField(
        child=serializers.FileField(), required=False, help_text=IMAGES_HELP + " One file per `images` part."
    )
    image_detail = ImageDetailField(
        required=False, help_text="OpenAI's image detail (auto, low or high), for every image."
    )


class RunMetricsSerializer(serializers.Serializer):
    """Token counts, cost and timings (seconds). A run that failed reports no metrics: an empty object."""

    input_tokens = serializers.IntegerField(required=False)
    output_tokens = serializers.IntegerField(required=False)
    total_tokens = serializers.IntegerField(required=False)
    cache_read_tokens = serializers.IntegerField(
        required=False, help_text="Of the input tokens, those the provider read from its prompt cache."
    )
    cost = serializers.FloatField(
        required=False,
        help_text="What the run's own model calls cost, in the currency of the model configs' prices "
        "(a team's member runs and a workflow's step runs have their own).",
    )
    time_to_first_token = serializers.FloatField(allow_null=True, required=False)
    duration = serializers.FloatField(required=False)


class RunErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class ServerSentEventSerializer(serializers.Serializer):
    """One Server-Sent Event of a streamed run (`stream=true`): an `event: <type>` line, then a
    `data: <JSON>` line. The stream ends after a terminal event: RunCompleted, RunError or
    RunCancelled."""

    event = serializers.CharField(
        help_text="The event type: RunStarted, RunContent, ToolCallStarted, ToolCallCompleted, ToolCallError, "
        "hook events, then RunCompleted, RunError or RunCancelled."
    )
    data = serializers.CharField(
        help_text="The event as a JSON object: `event`, `run_id`, `session_id`, `agent_id`, `event_index` "
        "(0, 1, 2... within the run), `created_at`, and the fields of its type."
    )


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
    status = serializers.ChoiceField(
        choices=["completed", "error", "cancelled", "paused"],
        help_text="`paused`: the run waits for a person to decide on tool calls (docs/human-in-the-loop.md).",
    )
    model = serializers.CharField()
    model_provider = serializers.CharField()
    created_at = serializers.IntegerField(help_text="Unix time, seconds.")
    metrics = RunMetricsSerializer()
    config_version = serializers.IntegerField(
        required=False,
        help_text="The number of the configuration version it ran with (GET /api/{kind}s/{id}/versions/{number}).",
    )
    error = RunErrorSerializer(required=False)
    tools = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="A paused run: the tool calls waiting for a decision (agno's ToolExecution shape).",
    )
    requirements = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="A paused run: one agno RunRequirement per waiting call (`id`, `created_at`, `tool_execution`).",
    )
    expires_at = serializers.DateTimeField(
        required=False, help_text="A paused run: when it expires undecided (its calls then never run)."
    )


# ---- Teams and workflows -----------------------------------------------------------------------


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
    config_version = serializers.IntegerField(
        required=False,
        help_text="The number of the configuration version it ran with (GET /api/{kind}s/{id}/versions/{number}).",
    )
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
    config_version = serializers.IntegerField(
        required=False,
        help_text="The number of the configuration version it ran with (GET /api/{kind}s/{id}/versions/{number}).",
    )
    error = RunErrorSerializer(required=False)
    failed_step = serializers.CharField(required=False, allow_null=True)
