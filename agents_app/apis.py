"""The agents REST API: thin edges that parse input, call the engine or a selector, and render."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from agents_app.async_views import AsyncAPIView
from agents_app.engine.runner import InvalidRunInput, RunHandle, arun, run_prepare, stream_detached
from agents_app.models import Agent, ModelConfig
from agents_app.selectors import AgentNotFound, agent_list_for_user
from agents_app.serializers import (
    AgentAdminSerializer,
    AgentSerializer,
    ModelConfigSerializer,
    RunInputSerializer,
    RunOutputSerializer,
)
from agents_app.sse import sse_response
from sessions_app.services import SessionNotFound

# A failed run is never a 200: the status says which side failed.
ERROR_STATUS = {
    "model_timeout": 504,
    "model_rate_limited": 503,
    "internal_error": 500,
}
UPSTREAM_FAILURE = 502


class ReadOrStaffWrite(permissions.BasePermission):
    """Any authenticated user reads; only staff create, change or delete."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


@extend_schema_view(
    list=extend_schema(summary="List agents", description="Active agents; staff also see inactive ones."),
    retrieve=extend_schema(summary="Get an agent"),
    create=extend_schema(summary="Create an agent (staff)"),
    update=extend_schema(summary="Replace an agent (staff)"),
    partial_update=extend_schema(summary="Change an agent (staff)"),
    destroy=extend_schema(summary="Delete an agent (staff); refused while it has sessions"),
)
class AgentViewSet(viewsets.ModelViewSet):
    permission_classes = [ReadOrStaffWrite]
    lookup_field = "slug"
    lookup_url_kwarg = "agent_id"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    queryset = Agent.objects.none()

    def get_queryset(self) -> Any:
        return agent_list_for_user(user=self.request.user)

    def get_serializer_class(self) -> Any:
        return AgentAdminSerializer if self.request.user.is_staff else AgentSerializer

    def perform_destroy(self, instance: Agent) -> None:
        from django.db.models import ProtectedError

        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError(
                {"detail": "This agent has sessions; deactivate it instead of deleting it."}
            ) from None


@extend_schema_view(
    list=extend_schema(summary="List model configs (staff)"),
    create=extend_schema(summary="Create a model config (staff); the API key is write-only"),
)
class ModelConfigViewSet(viewsets.ModelViewSet):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = ModelConfigSerializer
    queryset = ModelConfig.objects.all()

    def perform_destroy(self, instance: ModelConfig) -> None:
        from django.db.models import ProtectedError

        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError({"detail": "Agents use this model config; point them elsewhere first."}) from None


class AgentRunApi(AsyncAPIView):
    """Start a run of an agent: JSON or form body; answer as JSON or as Server-Sent Events."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    permission_classes = [permissions.IsAuthenticated]

    def prepare_post(self, request: Any, agent_id: str) -> tuple[RunHandle, bool]:
        serializer = RunInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            handle = run_prepare(
                agent_id=agent_id, user=request.user, message=data["message"], session_id=data.get("session_id")
            )
        except AgentNotFound:
            raise NotFound(f"No agent with id {agent_id!r}.") from None
        except SessionNotFound:
            raise NotFound(f"No session {data.get('session_id')} for agent {agent_id!r}.") from None
        except InvalidRunInput as exc:
            raise ValidationError({"message": [str(exc)]}) from None
        return handle, data["stream"]

    @extend_schema(
        summary="Run an agent",
        request={
            "application/json": RunInputSerializer,
            "application/x-www-form-urlencoded": RunInputSerializer,
            "multipart/form-data": RunInputSerializer,
        },
        responses={
            (200, "application/json"): RunOutputSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="With stream=true: `event: <Name>` / `data: <json>` frames."
            ),
            400: OpenApiResponse(description="Invalid input (missing/blank/oversized message, malformed body)."),
            401: OpenApiResponse(description="Not authenticated."),
            404: OpenApiResponse(description="Unknown agent, or a session that is not yours."),
            502: OpenApiResponse(
                RunOutputSerializer,
                description="The run failed upstream: the model server, or an answer that does not match the output schema.",
            ),
            503: OpenApiResponse(RunOutputSerializer, description="The model server is rate limiting."),
            504: OpenApiResponse(RunOutputSerializer, description="The model server timed out."),
        },
    )
    async def post(self, request: Any, agent_id: str) -> Any:
        handle, stream = self.prepared
        if stream:
            return sse_response(stream_detached(handle))
        result = await arun(handle)
        status = 200 if result.status == "completed" else ERROR_STATUS.get(result.error_type, UPSTREAM_FAILURE)
        return HttpResponse(orjson.dumps(result.to_dict()), status=status, content_type="application/json")
