"""agno's continue of a paused run (docs/human-in-the-loop.md): `POST /agents/{agent_id}/runs/
{run_id}/continue` with the form agno's client sends (`AgentOSClient.continue_agent_run[_stream]`,
`RemoteAgent.acontinue_run`): `tools`, a JSON list of its ToolExecution dicts with the decisions set
(`confirmed` and `confirmation_note`, `user_input_schema` values, an external call's `result`),
`stream` (default true), `session_id` and `user_id` (accepted; the run and its user decide).
And `POST /teams/{team_id}/runs/{run_id}/continue` (`continue_team_run[_stream]`,
`RemoteTeam.acontinue_run`): `requirements`, a JSON list of RunRequirement dicts, resolved.
And `POST /workflows/{workflow_id}/runs/{run_id}/continue` (`continue_workflow_run[_stream]`):
`step_requirements`, a JSON list of StepRequirement dicts whose `executor_requirements` (the paused
step run's RunRequirements) are resolved; agno's other step requirement kinds are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer

from agents_app import runs
from agents_app.agno_compat import schema as doc
from agents_app.agno_compat import serializers as s
from agents_app.agno_compat.views import AgnoView, _named, _parse_uuid
from agents_app.engine.approvals import (
    InvalidDecision,
    decisions_from_agno_requirements,
    decisions_from_agno_step_requirements,
    decisions_from_agno_tools,
)
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.access import allowed_for
from sessions_app.errors import DomainError, run_http_status
from sessions_app.inputs import InvalidInput, parse_json


class _ContinueFormSerializer(serializers.Serializer):
    """The form of every continue route: one JSON list field (named by `payload_field`, declared by
    the subclass), `stream`, and the ids agno's client sends along."""

    payload_field = ""
    stream = s.FormBooleanField(default=True)
    session_id = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    user_id = serializers.CharField(required=False, allow_blank=True, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        # A JSON body may carry the list as a list rather than a string.
        field = self.payload_field
        if hasattr(data, "get") and isinstance(data.get(field), list):
            data = {**data, field: orjson.dumps(data[field]).decode()}
        return super().to_internal_value(data)


class ContinueFormSerializer(_ContinueFormSerializer):
    payload_field = "tools"
    tools = serializers.CharField(trim_whitespace=False, allow_blank=True, default="")


class TeamContinueFormSerializer(_ContinueFormSerializer):
    payload_field = "requirements"
    requirements = serializers.CharField(trim_whitespace=False, allow_blank=True, default="")


class WorkflowContinueFormSerializer(_ContinueFormSerializer):
    payload_field = "step_requirements"
    step_requirements = serializers.CharField(trim_whitespace=False, allow_blank=True, default="")


class ToolsRefused(DomainError):
    """agno answers a `tools` body it cannot use with a 400 `{"detail"}`: so do we, with our code
    (`invalid_decision`, `unknown_tool_call`)."""

    status = 400

    def __init__(self, exc: InvalidDecision) -> None:
        super().__init__(exc.detail)
        self.code = exc.code


def _continue_schema(kind: str, *, summary: str, description: str, first_event: str, e400: str) -> Any:
    """The OpenAPI of a continue route: the kind's run output (stream=false) or its events, and the
    errors every continue has; the kind's own words in `description` and `e400`."""
    return doc.documented(
        post=extend_schema(
            summary=summary,
            description=description,
            request=doc.RUN_REQUEST,
            responses={
                (200, "application/json"): OpenApiResponse(doc.RUN_OUTPUT[kind], description="With stream=false."),
                (200, "text/event-stream"): OpenApiResponse(
                    doc.RunEventSerializer, description=f"{first_event} first."
                ),
                **doc.agno_errors(
                    400,
                    401,
                    404,
                    409,
                    422,
                    e400=e400,
                    e404=f"Not your run of this {kind}.",
                    e409="The run does not wait for a decision (`run_not_paused`).",
                ),
            },
        ),
    )


class _ContinueView(AgnoView):
    """One continue for agents, teams and workflows: the subclass names its kind, its form and how
    agno's JSON list becomes our decisions; the rest (scope, parse, prepare, stream or wait) is shared."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    kind = ""
    form_class: type[_ContinueFormSerializer] = _ContinueFormSerializer
    decisions_from: Callable[[Any], Any]

    def prepare_post(self, request: Any, run_id: str, **kwargs: str) -> tuple[Any, bool]:
        component_key = f"{self.kind}_id"
        component_id = kwargs[component_key]
        run_uuid: UUID = _parse_uuid(run_id, "Run")
        if not allowed_for(request.auth, request.user).permits(self.kind, component_id):  # a scoped token's only
            raise NotFound("Run not found")
        form = self.form_class(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        field = self.form_class.payload_field
        raw = data[field]
        try:
            payload = parse_json(raw, field=field) if raw.strip() else []
        except InvalidInput as exc:
            raise ToolsRefused(InvalidDecision(f"Invalid JSON in {field} field: {exc.detail}")) from None
        try:
            decisions = self.decisions_from(payload)
            handle = runs.continue_prepare(
                run_uuid, user=request.user, decisions=decisions, channel="agno", **{component_key: component_id}
            )
        except InvalidDecision as exc:
            raise ToolsRefused(exc) from None
        return handle, data["stream"]

    async def post(self, request: Any, run_id: str, **kwargs: str) -> Any:
        handle, stream = self.prepared
        if stream:
            return sse_response(_named(runs.continue_follow(handle), f"{self.kind}_name", handle.component_name))
        events = await runs.launch(handle, stream=False).wait()
        result = handle.result(events)
        body = s.output_json(handle, events, result)
        return HttpResponse(orjson.dumps(body), status=run_http_status(result), content_type="application/json")


@_continue_schema(
    "agent",
    summary="Continue a paused agent run",
    description=(
        "agno's continue: `tools` (a JSON list of the paused run's tool executions with the decisions set: "
        "`confirmed` true or false with `confirmation_note`, the `user_input_schema` values, an external call's "
        "`result`); `stream` (default true). Every pending call needs its decision."
    ),
    first_event="RunContinued",
    e400="`tools` is not JSON, a call has no decision (`invalid_decision`) or is not pending (`unknown_tool_call`).",
)
class RunContinueView(_ContinueView):
    kind = "agent"
    form_class = ContinueFormSerializer
    decisions_from = staticmethod(decisions_from_agno_tools)


@_continue_schema(
    "team",
    summary="Continue a paused team run",
    description=(
        "agno's team continue: `requirements` (a JSON list of the paused run's requirements, resolved: "
        "`confirmation` true or false with `confirmation_note`, the `user_input_schema` values, an external "
        "call's `external_execution_result`; or the same set on each `tool_execution`); `stream` (default "
        "true). The member run that waits goes on, then the leader. Every pending call needs its decision."
    ),
    first_event="TeamRunContinued",
    e400="`requirements` is not JSON, a call has no decision (`invalid_decision`) or is not pending "
    "(`unknown_tool_call`).",
)
class TeamRunContinueView(_ContinueView):
    kind = "team"
    form_class = TeamContinueFormSerializer
    decisions_from = staticmethod(decisions_from_agno_requirements)


@_continue_schema(
    "workflow",
    summary="Continue a paused workflow run",
    description=(
        "agno's workflow continue: `step_requirements` (a JSON list of the paused run's step requirements, "
        "as the paused run's `step_requirements` has them, each `executor_requirements` resolved like the "
        "team route's `requirements`); `stream` (default true). The step run that waits goes on, then the "
        "workflow's next steps. Only executor requirements (`requires_executor_input`) are served: a step's "
        "own confirmation, user input, route selection or output review is refused "
        "(`unsupported_step_requirement`)."
    ),
    first_event="StepContinued",
    e400="`step_requirements` is not JSON, a call has no decision (`invalid_decision`) or is not "
    "pending (`unknown_tool_call`), or a requirement of a kind not served "
    "(`unsupported_step_requirement`).",
)
class WorkflowRunContinueView(_ContinueView):
    kind = "workflow"
    form_class = WorkflowContinueFormSerializer
    decisions_from = staticmethod(decisions_from_agno_step_requirements)
