"""Continue a paused run over REST (docs/human-in-the-loop.md): a decision per pending tool call,
answered as JSON or as the continuation's events (SSE). Served by any process: the paused run's
state is in the database."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.renderers import JSONRenderer

from agents_app import runs
from agents_app.engine.approvals import Decision
from agents_app.serializers import RunOutputSerializer, ServerSentEventSerializer
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.api_base import BODY_ERRORS, AsyncAPIView, error_responses
from sessions_app.errors import run_http_status
from sessions_app.inputs import InvalidInput, clean_json, clean_text

MAX_DECISIONS = 256


class DecisionSerializer(serializers.Serializer):
    """A decision on one pending tool call."""

    tool_call_id = serializers.CharField(max_length=200, help_text="The call's `tool_call_id` (from RunPaused).")
    decision = serializers.ChoiceField(
        choices=["approve", "reject"],
        help_text="approve: the call runs (or, executed by the client, its `result` goes to the model); reject: it "
        "does not run, and the model is told, with your `note`.",
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=10_000, trim_whitespace=False, default="", help_text="Why."
    )
    arguments = serializers.DictField(
        required=False,
        help_text="For approve: argument values that replace the model's (the user-input fields of a user-input "
        "call must be given, here or by the model).",
    )
    result = serializers.JSONField(
        required=False, help_text="For approve of an externally executed call: its result (text, or any JSON)."
    )

    def validate_note(self, value: str) -> str:
        try:
            return clean_text(value)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None

    def validate_arguments(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return clean_json(value, field="arguments")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None

    def validate_result(self, value: Any) -> Any:
        try:
            return clean_json(value, field="result")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None


class RunContinueInputSerializer(serializers.Serializer):
    decisions = DecisionSerializer(
        many=True, max_length=MAX_DECISIONS, help_text="One decision per pending tool call (all of them)."
    )
    stream = serializers.BooleanField(
        default=False, help_text="Answer as Server-Sent Events (the continuation's events) instead of one JSON object."
    )


def decisions_from(rows: list[dict[str, Any]]) -> list[Decision]:
    return [
        Decision(
            tool_call_id=row["tool_call_id"],
            approve=row["decision"] == "approve",
            note=row.get("note") or "",
            arguments=row.get("arguments"),
            result=None
            if row.get("result") is None
            else row["result"]
            if isinstance(row["result"], str)
            else orjson.dumps(row["result"]).decode(),
        )
        for row in rows
    ]


class RunContinueApi(AsyncAPIView):
    """Continue one of my paused runs."""

    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def prepare_post(self, request: Any, run_id: UUID) -> tuple[Any, bool]:
        serializer = RunContinueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        handle = runs.continue_prepare(
            run_id, user=request.user, decisions=decisions_from(data["decisions"]), channel="api"
        )
        return handle, data["stream"]

    @extend_schema(
        summary="Continue one of my paused runs",
        description=(
            "A run that paused (status `paused`, stream ended with `RunPaused`) waits for a decision on each of its "
            "pending tool calls: approve (with arguments filled in or edited, or an externally executed call's "
            "`result`) or reject (with a note the model is told). The run then goes on as the same run: "
            "`RunContinued`, the approved calls' events, the model's answer (it may pause again). Any server "
            "process can continue it. The answer is the whole run's result, or with `stream`, the continuation's "
            "events as Server-Sent Events."
        ),
        parameters=[OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=RunContinueInputSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(RunOutputSerializer, description="The run's result."),
            (200, "text/event-stream"): OpenApiResponse(
                ServerSentEventSerializer, description="With stream=true: the continuation's events."
            ),
            **error_responses(
                *BODY_ERRORS,
                401,
                403,
                404,
                409,
                e400="Invalid decisions: a pending call without one (`invalid_decision`), a tool call id the run does "
                "not wait for (`unknown_tool_call`), arguments the tool refuses, a missing external result.",
                e404="No such run of yours, or its agent is gone.",
                e409="The run does not wait for a decision (`run_not_paused`): it ended, expired, or was continued.",
            ),
        },
    )
    async def post(self, request: Any, run_id: UUID) -> Any:
        handle, stream = self.prepared
        if stream:
            return sse_response(runs.continue_follow(handle))
        result = await runs.wait_result(handle)
        return HttpResponse(orjson.dumps(result), status=run_http_status(result), content_type="application/json")
