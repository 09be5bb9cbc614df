"""The configuration versions of agents, teams and workflows over REST, for staff (agents_app.versions):

    GET /api/{kind}s/{id}/versions/            the versions, newest first (no snapshots)
    GET /api/{kind}s/{id}/versions/{number}    one version with its snapshot

One view per shape; the kind comes from the URL, as for runs. An unknown runnable is the kind's 404
(`unknown_agent`, ...), an unknown version number 404 `unknown_version`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_app.models import ConfigVersion
from agents_app.selectors import AgentNotFound, TeamNotFound, WorkflowNotFound
from agents_app.versions import MODELS, get_version, versions_of
from sessions_app.api_base import StrictInputMixin, error_responses

NOT_FOUND = {"agent": AgentNotFound, "team": TeamNotFound, "workflow": WorkflowNotFound}


class ConfigVersionSerializer(serializers.ModelSerializer):
    # Plain strings, not enums: drf-spectacular would name an enum after every field called so.
    kind = serializers.CharField(help_text="agent, team or workflow.")
    source = serializers.CharField(
        help_text="How it was recorded: admin, api, restore, or run (changed without either, found at a run's start)."
    )
    author = serializers.SerializerMethodField(help_text="The username of who saved it; null: unknown or a run.")
    runnable_id = serializers.SerializerMethodField(help_text="The agent's, team's or workflow's id (slug).")

    class Meta:
        model = ConfigVersion
        fields = ["number", "kind", "runnable_id", "author", "source", "restored_from", "created_at", "snapshot_hash"]

    def get_author(self, obj: ConfigVersion) -> str | None:
        return obj.author.get_username() if obj.author is not None else None

    def get_runnable_id(self, obj: ConfigVersion) -> str:
        return str(obj.snapshot.get("slug", ""))


class ConfigVersionDetailSerializer(ConfigVersionSerializer):
    snapshot = serializers.JSONField(help_text="The whole configuration (API keys only as a fingerprint).")

    class Meta(ConfigVersionSerializer.Meta):
        fields = [*ConfigVersionSerializer.Meta.fields, "snapshot"]


def _runnable(kind: str, slug: str) -> Any:
    runnable = MODELS[kind].objects.filter(slug=slug).first()
    if runnable is None:
        raise NOT_FOUND[kind](f"No {kind} with id {slug!r}.")
    return runnable


class _VersionsApi(StrictInputMixin, APIView):
    permission_classes = [permissions.IsAdminUser]
    kind = "agent"

    @classmethod
    def for_kind(cls, kind: str) -> type[_VersionsApi]:
        return type(f"{kind.capitalize()}{cls.__name__.lstrip('_')}", (cls,), {"kind": kind, "__doc__": cls.__doc__})


class VersionListApi(_VersionsApi):
    """The configuration versions of an agent, team or workflow, newest first (staff)."""

    @extend_schema(
        summary="List configuration versions (staff)",
        responses={200: ConfigVersionSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request: Any, **kwargs: str) -> Response:
        runnable = _runnable(self.kind, kwargs[f"{self.kind}_id"])
        rows = versions_of(self.kind, runnable.pk).order_by("-number")
        return Response(ConfigVersionSerializer(rows, many=True).data)


class VersionDetailApi(_VersionsApi):
    """One configuration version of an agent, team or workflow, with its snapshot (staff)."""

    @extend_schema(
        summary="Get a configuration version (staff)",
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version number.")],
        responses={
            200: ConfigVersionDetailSerializer,
            **error_responses(401, 403, 404, e404="No such agent, team or workflow, or no such version."),
        },
    )
    def get(self, request: Any, number: int, **kwargs: str) -> Response:
        runnable = _runnable(self.kind, kwargs[f"{self.kind}_id"])
        return Response(ConfigVersionDetailSerializer(get_version(self.kind, runnable.pk, number)).data)
