"""The agents REST API: thin edges that parse input, call the engine or a selector, and render."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse, QueryDict
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import permissions, viewsets
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer

from agents_app import runs
from agents_app.idempotency import IdempotentReplay, check_key
from agents_app.models import Agent, ConfigVersion, ModelConfig, Team, Workflow
from agents_app.selectors import agent_list_for_user, team_list_for_user, workflow_list_for_user
from agents_app.serializers import (
    AgentAdminSerializer,
    AgentSerializer,
    ModelConfigSerializer,
    RunFormInputSerializer,
    RunInputSerializer,
    RunMultipartInputSerializer,
    RunOutputSerializer,
    ServerSentEventSerializer,
    TeamRunOutputSerializer,
    TeamSerializer,
    WorkflowRunOutputSerializer,
    WorkflowSerializer,
)
from agents_app.sse import EventStreamRenderer, sse_response
from agents_app.versions import record_dependents, record_version
from sessions_app.access import allowed_for
from sessions_app.api_base import BODY_ERRORS, AsyncAPIView, ImageJSONParser, StrictInputMixin, error_responses
from sessions_app.errors import RUN_ERROR_STATUS, UPSTREAM_FAILURE, InvalidImage, run_http_status
from sessions_app.images import ImageInput, ImageUploadHandler, images_from_json, images_from_uploads


def failed_run_responses(serializer: Any = RunOutputSerializer) -> dict[int, OpenApiResponse]:
    """One documented response per status a failed run can get (sessions_app.errors.RUN_ERROR_STATUS),
    with the error types behind it; the body is the stored run, as for a completed one."""
    types: dict[int, list[str]] = {UPSTREAM_FAILURE: ["any other (model_error, output_invalid...)"]}
    for error_type, status in RUN_ERROR_STATUS.items():
        types.setdefault(status, []).insert(0, f"`{error_type}`")
    return {
        status: OpenApiResponse(serializer, description=f"The run failed; `error.type`: {', '.join(names)}.")
        for status, names in sorted(types.items())
    }


class ReadOrStaffWrite(permissions.BasePermission):
    """Any authenticated user reads; only staff create, change or delete."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


SLUG_PATTERN = "^[-a-zA-Z0-9_]+$"

# Users read the public view of an agent; staff read (and write) every setting.
AGENT_BY_ROLE = PolymorphicProxySerializer(
    component_name="AgentByRole",
    serializers=[AgentSerializer, AgentAdminSerializer],
    resource_type_field_name=None,
)
AGENT_WRITE_RESPONSES = error_responses(*BODY_ERRORS, 401, 403)


@extend_schema_view(
    list=extend_schema(
        summary="List agents",
        description="Active agents; staff also see inactive ones, with every setting.",
        responses={200: AGENT_BY_ROLE, **error_responses(401)},
    ),
    retrieve=extend_schema(summary="Get an agent", responses={200: AGENT_BY_ROLE, **error_responses(401, 404)}),
    create=extend_schema(
        summary="Create an agent (staff)",
        request=AgentAdminSerializer,
        responses={201: AgentAdminSerializer, **AGENT_WRITE_RESPONSES},
    ),
    update=extend_schema(
        summary="Replace an agent (staff)",
        request=AgentAdminSerializer,
        responses={200: AgentAdminSerializer, **AGENT_WRITE_RESPONSES, **error_responses(404)},
    ),
    partial_update=extend_schema(
        summary="Change an agent (staff)",
        request=AgentAdminSerializer,
        responses={200: AgentAdminSerializer, **AGENT_WRITE_RESPONSES, **error_responses(404)},
    ),
    destroy=extend_schema(
        summary="Delete an agent (staff); refused while it has sessions",
        responses={
            204: None,
            **error_responses(400, 401, 403, 404, e400="The agent has sessions; deactivate it instead."),
        },
    ),
)
class AgentViewSet(StrictInputMixin, viewsets.ModelViewSet):
    permission_classes = [ReadOrStaffWrite]
    lookup_field = "slug"
    lookup_url_kwarg = "agent_id"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    queryset = Agent.objects.none()

    def get_queryset(self) -> Any:
        return agent_list_for_user(user=self.request.user, allowed=allowed_for(self.request.auth, self.request.user))

    def get_serializer_class(self) -> Any:
        return AgentAdminSerializer if self.request.user.is_staff else AgentSerializer

    def perform_create(self, serializer: Any) -> None:
        super().perform_create(serializer)
        record_version(serializer.instance, author=self.request.user, source=ConfigVersion.Source.API)

    def perform_update(self, serializer: Any) -> None:
        super().perform_update(serializer)
        record_version(serializer.instance, author=self.request.user, source=ConfigVersion.Source.API)

    def perform_destroy(self, instance: Agent) -> None:
        from django.db.models import ProtectedError

        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError(
                {"detail": "This agent has sessions; deactivate it instead of deleting it."}
            ) from None


MODEL_WRITE_RESPONSES = {200: ModelConfigSerializer, **error_responses(*BODY_ERRORS, 401, 403, 404)}


@extend_schema_view(
    list=extend_schema(
        summary="List model configs (staff)", responses={200: ModelConfigSerializer, **error_responses(401, 403)}
    ),
    retrieve=extend_schema(
        summary="Get a model config (staff)",
        responses={200: ModelConfigSerializer, **error_responses(401, 403, 404)},
    ),
    create=extend_schema(
        summary="Create a model config (staff); the API key is write-only",
        responses={201: ModelConfigSerializer, **error_responses(*BODY_ERRORS, 401, 403)},
    ),
    update=extend_schema(summary="Replace a model config (staff)", responses=MODEL_WRITE_RESPONSES),
    partial_update=extend_schema(summary="Change a model config (staff)", responses=MODEL_WRITE_RESPONSES),
    destroy=extend_schema(
        summary="Delete a model config (staff); refused while agents use it",
        responses={204: None, **error_responses(400, 401, 403, 404, e400="Agents use this model config.")},
    ),
)
class ModelConfigViewSet(StrictInputMixin, viewsets.ModelViewSet):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = ModelConfigSerializer
    queryset = ModelConfig.objects.all()

    def perform_update(self, serializer: Any) -> None:
        super().perform_update(serializer)
        # What its agents and teams run changed: each gets a version.
        record_dependents(serializer.instance, author=self.request.user, source=ConfigVersion.Source.API)

    def perform_destroy(self, instance: ModelConfig) -> None:
        from django.db.models import ProtectedError

        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError({"detail": "Agents use this model config; point them elsewhere first."}) from None


RUN_REQUEST = {
    "application/json": RunInputSerializer,
    "application/x-www-form-urlencoded": RunFormInputSerializer,
    "multipart/form-data": RunMultipartInputSerializer,
}


def run_images(request: Any) -> list[ImageInput]:
    """The images of a run request (sessions_app.images): `images` objects in a JSON body, or
    `images` files (and `image_detail`) in a multipart one."""
    data = request.data
    if not isinstance(data, QueryDict):
        return images_from_json(data.get("images"))
    if any(not isinstance(value, UploadedFile) for value in data.getlist("images")):
        raise InvalidImage("In a form, 'images' are file uploads; send images given by URL in a JSON body.")
    return images_from_uploads(request.FILES.getlist("images"), detail=data.get("image_detail"))


_RUN_OUTPUT = {"agent": RunOutputSerializer, "team": TeamRunOutputSerializer, "workflow": WorkflowRunOutputSerializer}


async def _replay(request: Any, run_id: Any, stream: bool) -> Any:
    """The answer to a repeated request (same Idempotency-Key): the run it started, its events from
    the first (live while it runs) or its result, as the first request got them."""
    if stream:
        response = sse_response(await runs.replay_events(run_id, user=request.user))
    else:
        _, _, result = await runs.replay_result(run_id, user=request.user)
        response = HttpResponse(orjson.dumps(result), status=run_http_status(result), content_type="application/json")
    response["Idempotent-Replayed"] = "true"
    return response


class RunApi(AsyncAPIView):
    """Start a run of an agent, a team or a workflow (`kind`, from the URL): JSON or form body;
    answer as JSON (a failed run is never a 200) or as Server-Sent Events."""

    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]  # JSON, or the event stream (stream=true)
    # JSON bodies may be larger than DATA_UPLOAD_MAX_MEMORY_SIZE by their images' base64 text.
    parser_classes = [ImageJSONParser, FormParser, MultiPartParser]
    kind = "agent"

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Image files over the limits stop the multipart body as they arrive (sessions_app.images).
        with contextlib.suppress(AttributeError):  # the body was read already (nothing reads it before)
            ImageUploadHandler.install(request, fields=("images",))
        return super().initialize_request(request, *args, **kwargs)

    def prepare_post(self, request: Any, **kwargs: str) -> tuple[Any, bool]:
        serializer = RunInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            start = runs.prepare_or_defer(
                self.kind,
                kwargs[f"{self.kind}_id"],
                user=request.user,
                message=data["message"],
                session_id=data.get("session_id"),
                images=run_images(request),
                idempotency_key=check_key(request.headers.get("Idempotency-Key")),
                allowed=allowed_for(request.auth, request.user),
            )
        except IdempotentReplay as replay:
            return replay, data["stream"]
        return start, data["stream"]

    async def post(self, request: Any, **kwargs: str) -> Any:
        start, stream = self.prepared
        try:
            handle = start if isinstance(start, IdempotentReplay) else await runs.resolve(start)
        except IdempotentReplay as replay:  # a deferred start whose key had started a run meanwhile
            handle = replay
        if isinstance(handle, IdempotentReplay):
            return await _replay(request, handle.run_id, stream)
        if stream:
            return sse_response(runs.launch(handle).follow_batches())
        result = await runs.wait_result(handle)
        # A cancelled run (someone asked for it) is not a failure: 200 with status "cancelled".
        return HttpResponse(orjson.dumps(result), status=run_http_status(result), content_type="application/json")

    @classmethod
    def for_kind(cls, kind: str) -> type[RunApi]:
        """The view of one kind, with its own OpenAPI description (the handler is shared)."""

        async def post(self: RunApi, request: Any, **kwargs: str) -> Any:
            return await RunApi.post(self, request, **kwargs)

        article = "an" if kind[0] in "aeiou" else "a"
        documented = extend_schema(
            summary=f"Run {article} {kind}",
            parameters=[
                OpenApiParameter(f"{kind}_id", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN),
                OpenApiParameter(
                    "Idempotency-Key",
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description=(
                        "Any unique string (1-255 printable characters). A request repeating a key you sent in the "
                        "last 24 hours gets the run the first one started (its stream from the first event, or its "
                        "result) with `Idempotent-Replayed: true`, and starts nothing; the same key with a different "
                        "request is a 422 (`code` idempotency_key_reused)."
                    ),
                ),
            ],
            request=RUN_REQUEST,
            responses={
                (200, "application/json"): OpenApiResponse(
                    _RUN_OUTPUT[kind],
                    description="The run's result; with stream=true, its events as Server-Sent Events instead.",
                ),
                # For an event stream the schema describes one event (OpenAPI 3.2's `itemSchema`).
                (200, "text/event-stream"): OpenApiResponse(
                    ServerSentEventSerializer,
                    description="With stream=true: one Server-Sent Event per run event (a team's members' and a "
                    "workflow's steps' own events among them, with `parent_run_id`).",
                ),
                **error_responses(
                    *BODY_ERRORS,
                    401,
                    403,
                    404,
                    409,
                    429,
                    e429="Too many runs started (`code` rate_limited) or a quota is used up (quota_exceeded); "
                    "`Retry-After` says when to try again. Nothing was started.",
                    e400="Invalid input: missing, blank or oversized message, bad session_id or stream, malformed body; "
                    "an image that cannot be read (`code` invalid_image), too many images (too_many_images), "
                    "images for a workflow (images_not_accepted).",
                    e413="An image over AGENTOS['IMAGE_MAX_BYTES'] (`code` image_too_large), or a body over "
                    "DATA_UPLOAD_MAX_MEMORY_SIZE besides its images (request_too_large).",
                    e415="An image whose bytes are not of an accepted type (`code` unsupported_media_type), or a "
                    "Content-Type that is not one of the documented ones.",
                    e403="Cookie authentication without a CSRF token.",
                    e404=f"Unknown or inactive {kind}, or a session that is not yours.",
                    e409=f"The session is still answering a previous message (the {kind}'s busy-session policy "
                    "rejects; `code` session_busy), or the session has ended (`code` session_ended).",
                ),
                **failed_run_responses(_RUN_OUTPUT[kind]),
            },
        )(post)
        return type(f"{kind.capitalize()}RunApi", (cls,), {"kind": kind, "post": documented, "__doc__": cls.__doc__})


@extend_schema_view(
    list=extend_schema(summary="List teams", responses={200: TeamSerializer, **error_responses(401)}),
    retrieve=extend_schema(summary="Get a team", responses={200: TeamSerializer, **error_responses(401, 404)}),
)
class TeamViewSet(StrictInputMixin, viewsets.ReadOnlyModelViewSet):
    """Teams you can run (staff also see inactive ones). Configure them in the admin."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = TeamSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "team_id"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    queryset = Team.objects.none()
    list_for_user = staticmethod(team_list_for_user)

    def get_queryset(self) -> Any:
        return self.list_for_user(user=self.request.user, allowed=allowed_for(self.request.auth, self.request.user))


@extend_schema_view(
    list=extend_schema(summary="List workflows", responses={200: WorkflowSerializer, **error_responses(401)}),
    retrieve=extend_schema(summary="Get a workflow", responses={200: WorkflowSerializer, **error_responses(401, 404)}),
)
class WorkflowViewSet(TeamViewSet):
    """Workflows you can run (staff also see inactive ones), with their steps. Configure them in the admin."""

    serializer_class = WorkflowSerializer
    lookup_url_kwarg = "workflow_id"
    queryset = Workflow.objects.none()
    list_for_user = staticmethod(workflow_list_for_user)


# ---- OpenAPI documentation of the pieces this app does not define as views -------------------


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Document our token authentication as what clients send: `Authorization: Bearer <token>`."""

    target_class = "agents_app.authentication.BearerOrTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>` (`Token <token>` also works): a scoped API token "
            "(`agos_…`, from `/api/tokens/`: it may be limited to some agents, teams and workflows, and to reads) "
            "or a DRF token (from `/api/auth/token/`).",
        }


class ObtainAuthTokenSchema(OpenApiViewExtension):
    """DRF's obtain_auth_token view (mounted by the site) documents only its 200, and claims to need
    the token it hands out."""

    target_class = "rest_framework.authtoken.views.ObtainAuthToken"
    match_subclasses = True
    priority = 1

    def view_replacement(self) -> Any:
        @extend_schema(
            summary="Exchange a username and password for an API token",
            responses={
                200: AuthTokenSerializer,
                **error_responses(
                    400,
                    401,
                    415,
                    e400="Missing fields, or wrong credentials (`non_field_errors`).",
                    e401="An Authorization header with an unknown token (none is needed here).",
                ),
            },
        )
        class DocumentedObtainAuthToken(self.target):  # type: ignore[name-defined,misc]
            # No permission checks at all (DRF's `()`), which the schema only shows as optional auth
            # when spelled AllowAny.
            permission_classes = [permissions.AllowAny]

        return DocumentedObtainAuthToken
