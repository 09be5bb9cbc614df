"""Sessions and runs of the authenticated user. Another user's session is a 404, never a 403,
so ids cannot be probed."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.access import allowed_for
from sessions_app.api_base import BODY_ERRORS, StrictInputMixin, error_responses
from sessions_app.models import Memory
from sessions_app.selectors import (
    MAX_IMAGE_POSITION,
    memory_list_for_user,
    run_get_for_user,
    run_image_for_user,
    session_detail_for_user,
    session_list_for_user,
)
from sessions_app.serializers import (
    MemoryCreateSerializer,
    MemorySerializer,
    MemoryUpdateSerializer,
    RunSerializer,
    SessionDetailSerializer,
    SessionRenameSerializer,
    SessionSerializer,
)
from sessions_app.services import (
    MemoryInvalid,
    memory_create,
    memory_delete,
    memory_update,
    session_delete,
    session_end,
    session_rename,
)

# Django's <uuid:...> path converter: lower-case, hyphenated.
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def uuid_path_parameter(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, pattern=UUID_PATTERN)


# A write to the user's own object: its 403 can only be the CSRF check.
_CSRF_403 = "Cookie authentication without a CSRF token."
_WRITE_ERRORS_NO_BODY = error_responses(401, 403, 404, e403=_CSRF_403)
_WRITE_ERRORS = error_responses(*BODY_ERRORS, 401, 403, 404, e403=_CSRF_403)


class SessionPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class SessionListApi(StrictInputMixin, generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = SessionSerializer
    pagination_class = SessionPagination

    def get_queryset(self) -> Any:
        q = self.request.query_params
        ids = {key: q.get(key) or None for key in ("agent_id", "team_id", "workflow_id")}
        return session_list_for_user(
            user=self.request.user,
            allowed=allowed_for(self.request.auth, self.request.user),
            search=q.get("search") or None,
            **ids,
        )

    @extend_schema(
        summary="List my sessions",
        parameters=[
            OpenApiParameter("agent_id", OpenApiTypes.STR, description="Only sessions of this agent."),
            OpenApiParameter("team_id", OpenApiTypes.STR, description="Only sessions of this team."),
            OpenApiParameter("workflow_id", OpenApiTypes.STR, description="Only sessions of this workflow."),
            OpenApiParameter(
                "search",
                OpenApiTypes.STR,
                description="Only sessions whose name or one of whose messages contains this text (ignoring case).",
            ),
        ],
        responses={200: SessionSerializer, **error_responses(401, 404, e404="No such page.")},
    )
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class SessionDetailApi(StrictInputMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]

    def _get(self, request: Any, session_id: Any) -> Any:
        session = session_detail_for_user(
            user=request.user, session_id=session_id, allowed=allowed_for(request.auth, request.user)
        )
        if session is None:
            raise NotFound("No such session.")
        return session

    @extend_schema(
        summary="Get my session with its runs and messages",
        parameters=[uuid_path_parameter("session_id")],
        responses={200: SessionDetailSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Any, session_id: Any) -> Response:
        session = self._get(request, session_id)
        return Response(SessionDetailSerializer(session, context={"request": request}).data)

    @extend_schema(
        summary="Rename my session",
        parameters=[uuid_path_parameter("session_id")],
        request=SessionRenameSerializer,
        responses={200: SessionSerializer, **_WRITE_ERRORS},
    )
    def patch(self, request: Any, session_id: Any) -> Response:
        serializer = SessionRenameSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        session = self._get(request, session_id)
        if "name" in serializer.validated_data:
            session = session_rename(session=session, name=serializer.validated_data["name"])
        return Response(SessionSerializer(session).data)

    @extend_schema(
        summary="Delete my session, its runs and messages",
        parameters=[uuid_path_parameter("session_id")],
        responses={204: None, **_WRITE_ERRORS_NO_BODY},
    )
    def delete(self, request: Any, session_id: Any) -> Response:
        session_delete(session=self._get(request, session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionEndApi(StrictInputMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="End my session",
        description="An ended session keeps its runs and stays readable, but takes no more messages (a run in "
        "it answers 409). Ending an ended session changes nothing.",
        parameters=[uuid_path_parameter("session_id")],
        request=None,
        responses={200: SessionSerializer, **_WRITE_ERRORS_NO_BODY},
    )
    def post(self, request: Any, session_id: Any) -> Response:
        sessions = session_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        session = sessions.filter(pk=session_id).first()
        if session is None:
            raise NotFound("No such session.")
        return Response(SessionSerializer(session_end(session=session)).data)


class RunDetailApi(StrictInputMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Get one of my runs with its messages",
        parameters=[uuid_path_parameter("run_id")],
        responses={200: RunSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Any, run_id: Any) -> Response:
        run = run_get_for_user(user=request.user, run_id=run_id, allowed=allowed_for(request.auth, request.user))
        if run is None:
            raise NotFound("No such run.")
        return Response(RunSerializer(run, context={"request": request}).data)


IMAGE_TYPES_SERVED = ("image/png", "image/jpeg", "image/gif", "image/webp")


class RunImageApi(StrictInputMixin, APIView):
    """An image sent with a run's message, to its owner (staff: any run's). Uploaded images are
    served from the storage here, never as public media; an image given by URL redirects to it."""

    permission_classes = [permissions.IsAuthenticated]

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # An <img> asks for image types; the body is an image whatever it asks (errors are JSON).
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="Get an image sent with one of my runs",
        parameters=[
            uuid_path_parameter("run_id"),
            OpenApiParameter(
                "position",
                {"type": "integer", "minimum": 0, "maximum": MAX_IMAGE_POSITION},
                OpenApiParameter.PATH,
                description="The image's place in the message (0, 1, ...).",
            ),
        ],
        responses={
            **{
                (200, mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The uploaded image.")
                for mime_type in IMAGE_TYPES_SERVED
            },
            302: OpenApiResponse(description="An image given by URL: a redirect to it."),
            **error_responses(401, 404, e404="No such image of a run of yours."),
        },
    )
    def get(self, request: Any, run_id: Any, position: int) -> HttpResponseBase:
        image = run_image_for_user(
            user=request.user, run_id=run_id, position=position, allowed=allowed_for(request.auth, request.user)
        )
        if image is None:
            raise NotFound("No such image.")
        if not image.file:
            return HttpResponseRedirect(image.url)
        try:
            # Read whole (at most IMAGE_MAX_BYTES): under ASGI, Django would read a file response
            # into memory anyway, from a thread.
            with image.file.open("rb") as handle:
                data = handle.read()
        except OSError:  # deleted from the storage meanwhile
            raise NotFound("No such image.") from None
        response = HttpResponse(data, content_type=image.mime_type or "application/octet-stream")
        response["Content-Disposition"] = content_disposition_header(False, image.name or image.file.name)
        response["Cache-Control"] = "private, max-age=3600"
        # Only ever an image: nothing in it may run as a page.
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


class MemoryPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _memory_error(exc: MemoryInvalid) -> ValidationError:
    return ValidationError({"memory": [str(exc)]})


class MemoryListApi(StrictInputMixin, generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = MemorySerializer
    pagination_class = MemoryPagination

    def get_queryset(self) -> Any:
        q = self.request.query_params
        filters = {key: q.get(key) or None for key in ("topic", "search", "agent_id")}
        return memory_list_for_user(
            user=self.request.user, allowed=allowed_for(self.request.auth, self.request.user), **filters
        )

    @extend_schema(
        summary="List my memories",
        description="What agents remember about me, newest first. Staff manage everyone's in the admin.",
        parameters=[
            OpenApiParameter("topic", OpenApiTypes.STR, description="Only memories with this topic (any case)."),
            OpenApiParameter("search", OpenApiTypes.STR, description="Only memories whose text contains this."),
            OpenApiParameter("agent_id", OpenApiTypes.STR, description="Only this agent's private memories."),
        ],
        responses={200: MemorySerializer, **error_responses(401, 404, e404="No such page.")},
    )
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add a memory about me",
        request=MemoryCreateSerializer,
        responses={201: MemorySerializer, **error_responses(*BODY_ERRORS, 401, 403, e403=_CSRF_403)},
    )
    def post(self, request: Any) -> Response:
        serializer = MemoryCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        agent_pk = None
        if data.get("agent_id") and not allowed_for(request.auth, request.user).permits("agent", data["agent_id"]):
            raise ValidationError({"agent_id": [f"No agent with id {data['agent_id']!r}."]})
        if data.get("agent_id"):
            # The agent model through the memory's relation: this app imports nothing of agents_app.
            agent_model = Memory._meta.get_field("agent").related_model
            agent_pk = agent_model.objects.filter(slug=data["agent_id"]).values_list("pk", flat=True).first()
            if agent_pk is None:
                raise ValidationError({"agent_id": [f"No agent with id {data['agent_id']!r}."]})
        try:
            memory = memory_create(
                user=request.user,
                memory=data["memory"],
                topics=data.get("topics"),
                agent_pk=agent_pk,
                source=Memory.Source.USER,
            )
        except MemoryInvalid as exc:
            raise _memory_error(exc) from None
        memory = memory_list_for_user(user=request.user).get(pk=memory.pk)
        return Response(MemorySerializer(memory).data, status=status.HTTP_201_CREATED)


class MemoryDetailApi(StrictInputMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]

    def _get(self, request: Any, memory_id: Any) -> Memory:
        memories = memory_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        memory = memories.filter(pk=memory_id).first()
        if memory is None:
            raise NotFound("No such memory.")
        return memory

    @extend_schema(
        summary="Get one of my memories",
        parameters=[uuid_path_parameter("memory_id")],
        responses={200: MemorySerializer, **error_responses(401, 404)},
    )
    def get(self, request: Any, memory_id: Any) -> Response:
        return Response(MemorySerializer(self._get(request, memory_id)).data)

    def _update(self, request: Any, memory_id: Any, *, partial: bool) -> Response:
        serializer = MemoryUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not partial and "memory" not in data:
            raise ValidationError({"memory": ["This field is required."]})
        memory = self._get(request, memory_id)
        try:
            memory = memory_update(memory=memory, text=data.get("memory"), topics=data.get("topics"))
        except MemoryInvalid as exc:
            raise _memory_error(exc) from None
        return Response(MemorySerializer(memory).data)

    @extend_schema(
        summary="Change one of my memories (text and/or topics)",
        parameters=[uuid_path_parameter("memory_id")],
        request=MemoryUpdateSerializer,
        responses={200: MemorySerializer, **_WRITE_ERRORS},
    )
    def patch(self, request: Any, memory_id: Any) -> Response:
        return self._update(request, memory_id, partial=True)

    @extend_schema(
        summary="Replace one of my memories",
        parameters=[uuid_path_parameter("memory_id")],
        request=MemoryUpdateSerializer,
        responses={200: MemorySerializer, **_WRITE_ERRORS},
    )
    def put(self, request: Any, memory_id: Any) -> Response:
        return self._update(request, memory_id, partial=False)

    @extend_schema(
        summary="Delete one of my memories",
        parameters=[uuid_path_parameter("memory_id")],
        responses={204: None, **_WRITE_ERRORS_NO_BODY},
    )
    def delete(self, request: Any, memory_id: Any) -> Response:
        memory_delete(memory=self._get(request, memory_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
