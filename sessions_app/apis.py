"""Sessions and runs of the authenticated user. Another user's session is a 404, never a 403,
so ids cannot be probed."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.selectors import run_get_for_user, session_detail_for_user, session_list_for_user
from sessions_app.serializers import RunSerializer, SessionDetailSerializer, SessionRenameSerializer, SessionSerializer
from sessions_app.services import session_delete, session_rename


class SessionPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class SessionListApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="List my sessions",
        parameters=[OpenApiParameter("agent_id", OpenApiTypes.STR, description="Only sessions of this agent.")],
        responses=SessionSerializer(many=True),
    )
    def get(self, request: Any) -> Response:
        agent_id = request.query_params.get("agent_id") or None
        qs = session_list_for_user(user=request.user, agent_id=agent_id)
        paginator = SessionPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(SessionSerializer(page, many=True).data)


class SessionDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    def _get(self, request: Any, session_id: Any) -> Any:
        session = session_detail_for_user(user=request.user, session_id=session_id)
        if session is None:
            raise NotFound("No such session.")
        return session

    @extend_schema(summary="Get my session with its runs and messages", responses=SessionDetailSerializer)
    def get(self, request: Any, session_id: Any) -> Response:
        return Response(SessionDetailSerializer(self._get(request, session_id)).data)

    @extend_schema(summary="Rename my session", request=SessionRenameSerializer, responses=SessionSerializer)
    def patch(self, request: Any, session_id: Any) -> Response:
        serializer = SessionRenameSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_rename(session=self._get(request, session_id), name=serializer.validated_data["name"])
        return Response(SessionSerializer(session).data)

    @extend_schema(summary="Delete my session, its runs and messages", responses={204: None})
    def delete(self, request: Any, session_id: Any) -> Response:
        session_delete(session=self._get(request, session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(summary="Get one of my runs with its messages", responses=RunSerializer)
    def get(self, request: Any, run_id: Any) -> Response:
        run = run_get_for_user(user=request.user, run_id=run_id)
        if run is None:
            raise NotFound("No such run.")
        return Response(RunSerializer(run).data)
