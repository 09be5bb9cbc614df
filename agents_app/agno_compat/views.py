"""The agno AgentOS compatible endpoints: thin async edges over our selectors, services, the run
engine and the runtime, answering in agno's shapes (see serializers.py).

Each view follows AsyncAPIView's pattern: authentication, permission checks and the view's sync
`prepare_<method>` (input validation and database work) run in one thread hop; the async handler
then launches or follows a run, or renders what was prepared.

Errors come in agno's (FastAPI's) shapes: `{"detail": "..."}`, and 422 with a list of
`{loc, msg, type}` for invalid fields.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Q
from django.http import HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import MethodNotAllowed, NotFound, ParseError, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from agents_app import events as ev
from agents_app import runs
from agents_app.agno_compat import schema as doc
from agents_app.agno_compat import serializers as s
from agents_app.authentication import BearerOrTokenAuthentication
from agents_app.health import readiness
from agents_app.idempotency import IdempotentReplay, check_key
from agents_app.runtime import RunNotFound, runtime
from agents_app.selectors import AgentNotFound, agent_list_for_user, teams_with_members, workflows_with_steps
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.access import allowed_for
from sessions_app.api_base import AsyncAPIView, agno_problem, as_api_exception
from sessions_app.db import db_call
from sessions_app.errors import ConflictError, run_http_status
from sessions_app.images import ImageUploadHandler, images_from_uploads
from sessions_app.models import Memory
from sessions_app.selectors import (
    memory_list_for_user,
    run_get_for_user,
    session_detail_for_user,
    session_list_for_user,
)
from sessions_app.services import (
    MemoryInvalid,
    memory_create,
    memory_delete,
    memory_update,
    session_create,
    session_delete,
    session_fork,
    session_rename,
    session_update,
    sessions_delete,
)

STARTED_AT = datetime.now(UTC)
SORT_FIELDS = {"created_at": "created_at", "updated_at": "updated_at", "session_name": "name"}
MAX_PAGE_SIZE = 100


class BadRequest(ParseError):
    """agno's 400 for a request it understands but refuses (e.g. lists of different lengths)."""

    default_code = "bad_request"


def _parse_uuid(value: str, what: str) -> UUID:
    """Our ids are UUIDs; anything else cannot name an object, so it is a 404 like any unknown id."""
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def _no_nul(value: str) -> str:
    """An id as a database filter value: one with a NUL character names nothing (and PostgreSQL
    refuses it in a query), so it becomes one that cannot match."""
    return "" if "\x00" in value else value


def _page_of(queryset: Any, *, page: int, limit: int) -> tuple[list[Any], int]:
    """One page of `queryset` and the total count. agno bounds neither `page` nor its offset; a page
    past the end is empty without asking the database for it (an offset past 2**63 is an error
    there, not an empty result)."""
    total = queryset.count()
    offset = (page - 1) * limit
    return (list(queryset[offset : offset + limit]) if offset < total else []), total


def _check_db_id(db_id: str | None) -> None:
    if db_id and db_id != s.DB_ID:
        raise NotFound(f"Database with id '{db_id}' not found")


class AgnoView(AsyncAPIView):
    """Base of the compatibility views: Bearer tokens (the REST API's: DRF's and scoped API tokens),
    agno's error shapes; documented in `<prefix>/openapi.json` only (schema.py). CORS (agno's Agent
    UI in a browser) is django-cors-headers' middleware's, as for the REST API (docs/deployment.md#cors)."""

    authentication_classes = [BearerOrTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer]
    schema = doc.AgnoAutoSchema()

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # A method the route does not serve is a 405 before anything else (FastAPI matches routes
        # and methods before any dependency, authentication included), in its words.
        method = request.method.lower()
        if method not in self.http_method_names or not hasattr(self, method):
            raise MethodNotAllowed(request.method, detail="Method Not Allowed")
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        exc = as_api_exception(exc)  # Django's request-size guards: 413 / 400, as on the REST API
        response = super().handle_exception(exc)
        response.status_code, response.data = agno_problem(exc, where=getattr(exc, "agno_where", "body"))
        return response

    def query(self, serializer_class: type[s.serializers.Serializer]) -> dict[str, Any]:
        """The query parameters, validated: their errors are located in "query", not "body"."""
        serializer = serializer_class(data=self.request.query_params)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError as exc:
            exc.agno_where = "query"  # type: ignore[attr-defined]
            raise
        return serializer.validated_data


class PublicReadOrAuthenticated(permissions.BasePermission):
    """A token, or, where the operator allows it (AGENTOS["OS_PUBLIC_READ"]), none for a read: what
    agno's RemoteAgent / RemoteTeam / RemoteWorkflow read without headers. Only on the views that
    describe the site (never runs, sessions or memories); an anonymous caller sees the active,
    unrestricted agents, teams and workflows only."""

    def has_permission(self, request: Any, view: Any) -> bool:
        from sessions_app.conf import agentos_settings

        if request.user and request.user.is_authenticated:
            return True
        return bool(agentos_settings.OS_PUBLIC_READ) and request.method in permissions.SAFE_METHODS


@csrf_exempt  # a 404 whatever the method (it changes nothing)
def not_found(request: Any, *args: Any, **kwargs: Any) -> JsonResponse:
    """An agno route this server does not serve."""
    return JsonResponse({"detail": "Not Found", "code": "not_found"}, status=404)


class PreparedGet:
    """A GET that did all its work in `prepare_get`, in the thread hop: render it."""

    prepared: Any

    async def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return Response(self.prepared)


# ---- Discovery ---------------------------------------------------------------------------------


@doc.documented(
    get=extend_schema(
        summary="Health check",
        description=(
            "agno's health answer, which is also this server's readiness: every dependency is checked "
            "as by `/readyz` (database and migrations, cache, channel layer, broker, Celery worker and "
            "beat), 200 when all that this deployment needs answer, 503 when one does not."
        ),
        auth=[],
        responses={
            200: doc.HealthSerializer,
            503: OpenApiResponse(doc.HealthSerializer, description="Not ready: `detail` names the failed checks."),
        },
    ),
)
class HealthView(AgnoView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    async def get(self, request: Any) -> Response:
        report = await readiness()
        return Response(s.health_json(STARTED_AT, report.as_dict()), status=200 if report.ready else 503)


def _runnable_agents(request: Any) -> list[Any]:
    """The agents this user can run (with the request's credentials): active ones (staff manage
    inactive ones in the REST API and the admin, but an inactive agent refuses runs, so an agno
    client has no use for it)."""
    agents = agent_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
    return list(agents.filter(is_active=True).order_by("slug"))


def _teams_json(request: Any) -> list[dict[str, Any]]:
    """Active teams, each with its members (agno lists the teams an OS serves to every user)."""
    return [
        s.team_json(team, tree) for team, tree in teams_with_members(allowed=allowed_for(request.auth, request.user))
    ]


def _workflows_json(request: Any) -> list[dict[str, Any]]:
    flows = workflows_with_steps(allowed=allowed_for(request.auth, request.user))
    return [s.workflow_json(workflow, steps) for workflow, steps in flows]


@doc.documented(
    get=extend_schema(summary="What this OS serves", responses={200: doc.ConfigSerializer, **doc.agno_errors(401)}),
)
class ConfigView(PreparedGet, AgnoView):
    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any) -> dict[str, Any]:
        return s.config_json(
            _runnable_agents(request),
            name="AgentOS for Django",
            teams=_teams_json(request),
            workflows=_workflows_json(request),
        )


@doc.documented(
    get=extend_schema(
        summary="List the agents you can run",
        responses={200: doc.AgentSerializer(many=True), **doc.agno_errors(401)},
    ),
)
class AgentListView(PreparedGet, AgnoView):
    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any) -> list[dict[str, Any]]:
        staff = bool(request.user.is_staff)
        return [s.agent_json(agent, staff=staff) for agent in _runnable_agents(request)]


@doc.documented(
    get=extend_schema(
        summary="Get an agent",
        responses={200: doc.AgentSerializer, **doc.agno_errors(401, 404, e404="No active agent with this id.")},
    ),
)
class AgentDetailView(PreparedGet, AgnoView):
    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any, agent_id: str) -> dict[str, Any]:
        agents = agent_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        agent = agents.filter(slug=agent_id, is_active=True).first()
        if agent is None:
            raise AgentNotFound()
        return s.agent_json(agent, staff=bool(request.user.is_staff))


@doc.documented(
    get=extend_schema(
        summary="List the active teams", responses={200: doc.TeamSerializer(many=True), **doc.agno_errors(401)}
    ),
)
class TeamListView(PreparedGet, AgnoView):
    """`GET /teams`: the active teams, with their members."""

    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any) -> list[dict[str, Any]]:
        return _teams_json(request)


@doc.documented(
    get=extend_schema(
        summary="List the active workflows",
        responses={200: doc.WorkflowSerializer(many=True), **doc.agno_errors(401)},
    ),
)
class WorkflowListView(PreparedGet, AgnoView):
    """`GET /workflows`: the active workflows, with their steps."""

    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any) -> list[dict[str, Any]]:
        return _workflows_json(request)


@doc.documented(
    get=extend_schema(
        summary="Get a team",
        responses={200: doc.TeamSerializer, **doc.agno_errors(401, 404, e404="No active team with this id.")},
    ),
)
class TeamDetailView(PreparedGet, AgnoView):
    """`GET /teams/{team_id}`: an active team as agno's `TeamResponse` (what `get_team` and
    `RemoteTeam`'s properties read); staff also see the leader's instructions and history setting."""

    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any, team_id: str) -> dict[str, Any]:
        from agents_app.selectors import team_get_active, team_members_tree

        # TeamNotFound: 404 "Team not found" (also for a team outside a scoped token's list)
        team = team_get_active(team_id=_no_nul(team_id), allowed=allowed_for(request.auth, request.user))
        return s.team_detail_json(team, team_members_tree(team), staff=bool(request.user.is_staff))


@doc.documented(
    get=extend_schema(
        summary="Get a workflow",
        responses={
            200: doc.WorkflowSerializer,
            **doc.agno_errors(401, 404, e404="No active workflow with this id."),
        },
    ),
)
class WorkflowDetailView(PreparedGet, AgnoView):
    """`GET /workflows/{workflow_id}`: an active workflow as agno's `WorkflowResponse` (agno's
    `version` query parameter is ignored: workflows here have one version, the admin's)."""

    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any, workflow_id: str) -> dict[str, Any]:
        from agents_app.selectors import workflow_get_active, workflow_steps_tree

        # 404 "Workflow not found" (also for a workflow outside a scoped token's list)
        workflow = workflow_get_active(
            workflow_id=_no_nul(workflow_id), allowed=allowed_for(request.auth, request.user)
        )
        return s.workflow_json(workflow, workflow_steps_tree(workflow)[0])


# ---- Runs ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunRequest:
    start: Any  # a prepared handle, or a deferred start (the session is busy: agents_app.runs)
    stream: bool


async def _named(events: AsyncIterator[Any], name_key: str, name: str) -> AsyncIterator[Any]:
    """The run's events (or batches of them: LiveRun.follow_batches); its own (not its members' or
    steps', which carry their own names) get agno's `agent_name` / `team_name` / `workflow_name`."""

    def named(event: ev.RunEvent) -> dict[str, Any]:
        data = event.to_dict()
        if not data.get("parent_run_id"):
            data[name_key] = name
        return data

    async for item in events:
        yield [named(event) for event in item] if isinstance(item, list) else named(item)


def _sent_media(request: Any, field: str) -> bool:
    """Whether the request carries media in `field` that this server refuses: any of agno's media
    fields, except files uploaded as agno's `files` (multipart parts with a file)."""
    if field != "files":
        return bool(request.data.get(field) or request.FILES.get(field))
    values = request.data.getlist(field) if isinstance(request.data, QueryDict) else [request.data.get(field)]
    return any(value and not isinstance(value, UploadedFile) for value in values)


class RunView(AgnoView):
    """`POST /{agents,teams,workflows}/{id}/runs` (one view; `kind` from the route): agno's form
    fields; SSE by default (`stream` omitted means true, as in agno), or agno's run output JSON with
    `stream=false`; a failed run is not a 200 (the REST API's status).

    Every run is launched through the runtime, so `.../cancel` finds it from any request, and a
    client that disconnects neither stops nor loses it."""

    kind = "agent"
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # agno's uploads (`files`) over the image limits stop the multipart body as they arrive.
        with contextlib.suppress(AttributeError):  # the body was read already (nothing reads it before)
            ImageUploadHandler.install(request, fields=("files",), other_files=True)
        return super().initialize_request(request, *args, **kwargs)

    def prepare_post(self, request: Any, **kwargs: str) -> _RunRequest:
        form = s.RunFormSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        sent_media = [f for f in s.MEDIA_FIELDS if _sent_media(request, f)]
        if sent_media:
            raise ValidationError({sent_media[0]: ["This server does not accept media inputs."]})
        # agno's `files` uploads: images go to the model with the message; any other file is a 415.
        images = images_from_uploads(request.FILES.getlist("files"), label="File")
        raw_session = (data.get("session_id") or "").strip()
        session_id = _parse_uuid(raw_session, f"Session with id '{raw_session}'") if raw_session else None
        try:
            start = runs.prepare_or_defer(
                self.kind,
                kwargs[f"{self.kind}_id"],
                user=request.user,
                message=data["message"],
                session_id=session_id,
                session_state=data.get("session_state"),
                images=images,
                idempotency_key=check_key(request.headers.get("Idempotency-Key")),
                allowed=allowed_for(request.auth, request.user),
            )
        except IdempotentReplay as replay:
            start = replay
        return _RunRequest(start=start, stream=data["stream"])

    async def post(self, request: Any, **kwargs: str) -> Any:
        prepared: _RunRequest = self.prepared
        try:
            handle = prepared.start
            if not isinstance(handle, IdempotentReplay):
                handle = await runs.resolve(prepared.start)
        except IdempotentReplay as replay:  # a deferred start whose key had started a run meanwhile
            handle = replay
        if isinstance(handle, IdempotentReplay):
            return await self._replay(request, handle.run_id, prepared.stream)
        live = runs.launch(handle, stream=prepared.stream)
        if prepared.stream:
            return sse_response(_named(live.follow_batches(), f"{self.kind}_name", handle.component_name))
        events = await live.wait()
        result = handle.result(events)
        body = s.output_json(handle, events, result)
        return HttpResponse(orjson.dumps(body), status=run_http_status(result), content_type="application/json")

    async def _replay(self, request: Any, run_id: UUID, stream: bool) -> Any:
        """A repeated request (same Idempotency-Key): the run the first one started, in agno's shapes."""
        if stream:
            handle = await db_call(runs.replay_handle, run_id)
            events = runs.replay_run_events(run_id, user=request.user)
            response = sse_response(_named(events, f"{self.kind}_name", handle.component_name))
        else:
            handle, stored, result = await runs.replay_result(run_id, user=request.user)
            body = s.output_json(handle, stored, result)
            response = HttpResponse(orjson.dumps(body), status=run_http_status(result), content_type="application/json")
        response["Idempotent-Replayed"] = "true"
        return response

    def prepare_get(self, request: Any, **kwargs: str) -> list[dict[str, Any]]:
        return component_runs_json(self, request, self.kind, kwargs[f"{self.kind}_id"])

    @classmethod
    def for_kind(cls, kind: str) -> type[RunView]:
        """The view of one kind, with its own OpenAPI description (the handler is shared)."""

        async def get(self: RunView, request: Any, **kwargs: str) -> Any:
            return Response(self.prepared)

        listed = extend_schema(
            summary=f"List {'an' if kind[0] in 'aeiou' else 'a'} {kind}'s runs in a session",
            parameters=[s.ComponentRunsQuerySerializer],
            responses={
                200: doc.StoredRunSerializer(many=True),
                **doc.agno_errors(401, 404, 422, e404=f"Unknown {kind}, or not your session of it."),
            },
        )(get)

        async def post(self: RunView, request: Any, **kwargs: str) -> Any:
            return await RunView.post(self, request, **kwargs)

        article = "an" if kind[0] in "aeiou" else "a"
        documented = extend_schema(
            summary=f"Run {article} {kind}",
            description=(
                f"agno's run of {article} {kind}: its form fields (multipart or urlencoded, as agno's client sends "
                "them) or the same fields as a JSON object. Other fields agno's client may send (stream_events, "
                "dependencies, knowledge_filters...) are ignored. Files uploaded as `files` (multipart) must be "
                "images (png, jpeg, gif, webp by default: AGENTOS['IMAGE_TYPES'], read from the bytes): the model "
                "gets them with the message (a workflow refuses them: 400 `images_not_accepted`); any other file "
                "is a 415 (`unsupported_media_type`), one over AGENTOS['IMAGE_MAX_BYTES'] a 413 "
                "(`image_too_large`), more than AGENTOS['IMAGE_MAX_COUNT'] a 400 (`too_many_images`). Other media "
                "fields (images, audio, videos, input_files) are refused with a 422; `background=true` is refused "
                "with a 422."
            ),
            request=doc.RUN_REQUEST,
            responses={
                (200, "application/json"): OpenApiResponse(
                    doc.RUN_OUTPUT[kind], description="With stream=false: the finished run."
                ),
                (200, "text/event-stream"): OpenApiResponse(
                    doc.RunEventSerializer,
                    description="With stream=true (the default): one Server-Sent Event per run event.",
                ),
                **doc.agno_errors(
                    *doc.BODY_ERRORS,
                    401,
                    404,
                    409,
                    429,
                    e404=f"Unknown or inactive {kind}, or a session that is not yours.",
                    e409="The session is still answering a previous message (`code` session_busy), or it has "
                    "ended (`code` session_ended).",
                ),
                **doc.failed_run_responses(kind),
            },
        )(post)
        return type(
            f"{kind.capitalize()}RunView",
            (cls,),
            {"kind": kind, "post": documented, "get": listed, "__doc__": cls.__doc__},
        )


@doc.documented(
    post=extend_schema(
        summary="Cancel a run",
        request=None,
        responses={
            200: OpenApiResponse(doc.EmptySerializer, description="`{}`, also for a run that has already finished."),
            **doc.agno_errors(401, 404, e404="Not your run of this agent, team or workflow."),
        },
    ),
)
class RunCancelView(AgnoView):
    """`POST /{agents|teams|workflows}/{id}/runs/{run_id}/cancel` (the kind comes from the URL):
    200 `{}` like agno, also for a run that has already finished (nothing changes then); 404 for a
    run that is not this user's run of that agent, team or workflow. The run ends with
    `RunCancelled` / `TeamRunCancelled` / `WorkflowCancelled`, keeping what it produced so far. A
    team member's or workflow step's run, cancelled through its agent's route, stops the whole run
    it is part of (the runtime's rule)."""

    def prepare_post(self, request: Any, kind: str, component_id: str, run_id: str) -> UUID:
        run_uuid = _parse_uuid(run_id, "Run")
        run = run_get_for_user(user=request.user, run_id=run_uuid, allowed=allowed_for(request.auth, request.user))
        if run is None or run.component_type != kind or run.component_id != component_id:
            raise NotFound("Run not found")
        return run_uuid

    async def post(self, request: Any, kind: str, component_id: str, run_id: str) -> Any:
        try:
            await runtime.cancel(self.prepared, user=request.user)
        except RunNotFound:
            raise NotFound("Run not found") from None
        return JsonResponse({})


# ---- Sessions ------------------------------------------------------------------------------------


@doc.documented(
    get=extend_schema(
        summary="List your sessions",
        operation_id="sessions_list",
        parameters=[s.SessionListQuerySerializer],
        responses={200: doc.SessionPageSerializer, **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`.")},
    ),
    post=extend_schema(
        summary="Create a session",
        operation_id="create_session",
        parameters=[s.SessionCreateQuerySerializer],
        request=s.SessionCreateSerializer,
        responses={
            201: doc.SessionDetailSerializer,
            **doc.agno_errors(
                *doc.BODY_ERRORS,
                401,
                404,
                409,
                e404="An unknown or inactive agent, team or workflow, or an unknown `db_id`.",
                e409="A session with this `session_id` exists (yours or not: the answer is the same).",
            ),
        },
    ),
    delete=extend_schema(
        summary="Delete sessions",
        operation_id="delete_sessions",
        request=s.SessionBulkDeleteSerializer,
        responses={
            204: OpenApiResponse(description="Deleted, with their runs (ids that are not yours are skipped)."),
            **doc.agno_errors(*doc.BODY_ERRORS, 401),
        },
    ),
)
class SessionListView(PreparedGet, AgnoView):
    """`GET /sessions`: my sessions, agno's `data` + `meta` page: of every kind, or of the `type`
    asked (agent, team, workflow); `component_id` is the agent's, team's or workflow's id. `user_id`
    is ignored: everyone sees only their own sessions, as in the REST API."""

    def prepare_get(self, request: Any) -> dict[str, Any]:
        q = self.query(s.SessionListQuerySerializer)
        _check_db_id(q.get("db_id"))
        limit = min(q["limit"], MAX_PAGE_SIZE)
        page = max(q["page"], 1)
        sessions = session_list_for_user(
            user=request.user,
            kind=q.get("type") or None,
            component_id=q.get("component_id") or None,
            allowed=allowed_for(request.auth, request.user),
        )
        if q.get("session_name"):
            sessions = sessions.filter(name__icontains=q["session_name"])
        field = SORT_FIELDS.get(q["sort_by"], "created_at")
        sessions = sessions.order_by(f"-{field}" if q["sort_order"] == "desc" else field, "-created_at")
        rows, total = _page_of(sessions, page=page, limit=limit)
        items = [s.session_json(x) for x in rows]
        return s.page_json(items, page=page, limit=limit, total=total)

    def prepare_post(self, request: Any) -> dict[str, Any]:
        q = self.query(s.SessionCreateQuerySerializer)
        _check_db_id(q.get("db_id"))
        body = s.SessionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data, kind = body.validated_data, q["type"]
        component_id = (data.get(f"{kind}_id") or "").strip()
        if not component_id:
            raise ValidationError({f"{kind}_id": [f"A {kind} session needs the id of its {kind}."]})
        component = runs.component_get_active(
            kind, _no_nul(component_id), allowed=allowed_for(request.auth, request.user)
        )
        session = session_create(
            user=request.user,
            kind=kind,
            component=component,
            session_id=data.get("session_id"),
            name=data.get("session_name") or "",
            state=data.get("session_state"),
            metadata=data.get("metadata"),
        )
        fresh = session_detail_for_user(user=request.user, session_id=session.pk)
        return s.any_session_detail_json(fresh)

    async def post(self, request: Any) -> Any:
        return Response(self.prepared, status=status.HTTP_201_CREATED)

    def prepare_delete(self, request: Any) -> None:
        body = s.SessionBulkDeleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids, types = body.validated_data["session_ids"], body.validated_data["session_types"]
        if len(ids) != len(types):
            raise BadRequest("Session IDs and session types must have the same length")
        uuids = []
        for value in ids:
            with contextlib.suppress(ValueError):  # an id that is not ours names nothing: skipped
                uuids.append(UUID(str(value)))
        mine = session_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        sessions_delete(sessions=mine.filter(pk__in=uuids))

    async def delete(self, request: Any) -> Any:
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)


class _SessionView(AgnoView):
    def session(self, request: Any, session_id: str) -> Any:
        """The user's session with its runs; with `type`, only if it is of that kind (agno's server
        answers a 404 for a session of another type); without, whatever its kind."""
        q = self.query(s.SessionTypeQuerySerializer)
        _check_db_id(q.get("db_id"))
        kind = q.get("type") or None
        session = session_detail_for_user(
            user=request.user,
            session_id=_parse_uuid(session_id, "Session"),
            kind=kind,
            allowed=allowed_for(request.auth, request.user),
        )
        if session is None:
            what = f"{kind.title()} Session" if kind else "Session"
            raise NotFound(f"{what} with id '{session_id}' not found")
        return session


SESSION_404 = "Not your session (of that `type`), or an unknown `db_id`."


@doc.documented(
    get=extend_schema(
        summary="Get a session",
        parameters=[s.SessionTypeQuerySerializer],
        responses={200: doc.SessionDetailSerializer, **doc.agno_errors(401, 404, 422, e404=SESSION_404)},
    ),
    patch=extend_schema(
        summary="Update a session",
        operation_id="update_session",
        parameters=[s.SessionTypeQuerySerializer],
        request=s.SessionUpdateSerializer,
        responses={200: doc.SessionDetailSerializer, **doc.agno_errors(*doc.BODY_ERRORS, 401, 404, e404=SESSION_404)},
    ),
    delete=extend_schema(
        summary="Delete a session",
        parameters=[s.SessionTypeQuerySerializer],
        responses={
            204: OpenApiResponse(description="Deleted, with its runs."),
            **doc.agno_errors(401, 404, 422, e404=SESSION_404),
        },
    ),
)
class SessionDetailView(PreparedGet, _SessionView):
    """`GET /sessions/{id}` (agno's Agent-, Team- or WorkflowSessionDetailSchema, by the session's
    kind), `DELETE /sessions/{id}` (204)."""

    def prepare_get(self, request: Any, session_id: str) -> dict[str, Any]:
        return s.any_session_detail_json(self.session(request, session_id))

    def prepare_delete(self, request: Any, session_id: str) -> None:
        session_delete(session=self.session(request, session_id))

    def prepare_patch(self, request: Any, session_id: str) -> dict[str, Any]:
        body = s.SessionUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        session = self.session(request, session_id)
        summary = data.get("summary")
        session_update(
            session=session,
            name=data.get("session_name"),
            state=data.get("session_state"),
            metadata=data.get("metadata"),
            summary=summary["summary"] if summary is not None else None,
        )
        return s.any_session_detail_json(self.session(request, session_id))

    async def patch(self, request: Any, session_id: str) -> Any:
        return Response(self.prepared)

    async def delete(self, request: Any, session_id: str) -> Any:
        # A plain response: AsyncAPIView re-wraps DRF Responses by their Content-Type, which an
        # empty 204 Response does not have.
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)


@doc.documented(
    post=extend_schema(
        summary="Rename a session",
        parameters=[s.SessionTypeQuerySerializer],
        request=s.SessionRenameSerializer,
        responses={200: doc.SessionDetailSerializer, **doc.agno_errors(*doc.BODY_ERRORS, 401, 404, e404=SESSION_404)},
    ),
)
class SessionRenameView(_SessionView):
    """`POST /sessions/{id}/rename` with JSON `{"session_name": ...}`: the renamed session."""

    def prepare_post(self, request: Any, session_id: str) -> dict[str, Any]:
        body = s.SessionRenameSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        session = session_rename(session=self.session(request, session_id), name=body.validated_data["session_name"])
        return s.any_session_detail_json(session)

    async def post(self, request: Any, session_id: str) -> Any:
        return Response(self.prepared)


@doc.documented(
    get=extend_schema(
        summary="List a session's runs",
        parameters=[s.SessionRunsQuerySerializer],
        responses={200: doc.StoredRunSerializer(many=True), **doc.agno_errors(401, 404, 422, e404=SESSION_404)},
    ),
)
class SessionRunsView(PreparedGet, _SessionView):
    """`GET /sessions/{id}/runs`: the session's runs, oldest first, each in agno's schema of what
    ran it (`RunSchema`, `TeamRunSchema`, `WorkflowRunSchema`; see `session_runs_json`), filtered
    by `created_after` / `created_before` (Unix seconds) and `status` (repeatable)."""

    def prepare_get(self, request: Any, session_id: str) -> list[dict[str, Any]]:
        q = self.query(s.SessionRunsQuerySerializer)

        def keep(run: Any) -> bool:
            created = int(run.created_at.timestamp())
            if "created_after" in q and created < q["created_after"]:
                return False
            if "created_before" in q and created > q["created_before"]:
                return False
            return not q.get("status") or s.RUN_STATUS.get(run.status, "") in q["status"]

        return s.session_runs_json(self.session(request, session_id), keep=keep)


@doc.documented(
    get=extend_schema(
        summary="Get one run of a session",
        parameters=[s.SessionTypeQuerySerializer],
        responses={
            200: doc.StoredRunSerializer,
            **doc.agno_errors(401, 404, 422, e404="Not your session, or no such run in it."),
        },
    ),
)
class SessionRunView(PreparedGet, _SessionView):
    """`GET /sessions/{id}/runs/{run_id}`: one run of the session, in its schema (a team's member
    run or a workflow's step run too)."""

    def prepare_get(self, request: Any, session_id: str, run_id: str) -> dict[str, Any]:
        found = _stored_run_json(self.session(request, session_id), _parse_uuid(run_id, "Run"), top_level=False)
        if found is None:
            raise NotFound(f"Run with ID {run_id} not found in session {session_id}")
        return found


def _stored_run_json(session: Any, run_uuid: UUID, *, top_level: bool) -> dict[str, Any] | None:
    """The session's run `run_uuid` in agno's run schema, with its member or step runs (None if
    not in the session; with `top_level`, a member's or step's own run is not one)."""
    runs_ = list(session.runs.all())
    for run in runs_:
        if run.pk == run_uuid and (not top_level or run.parent_run_id is None):
            return s.stored_run_json(run, children=s.runs_by_parent(runs_))
    return None


# ---- Memories ------------------------------------------------------------------------------------
# agno's memory routes over our Memory rows. As for sessions, `user_id` in queries and bodies is
# ignored: everyone reads and writes only their own memories (staff manage all in the admin).

MEMORY_SORT_FIELDS = {"updated_at": "updated_at", "created_at": "created_at", "memory": "memory"}


def _memory_or_404(request: Any, memory_id: str) -> Any:
    memories = memory_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
    memory = memories.filter(pk=_parse_uuid(memory_id, "Memory")).first()
    if memory is None:
        raise NotFound(f"Memory with id '{memory_id}' not found")
    return memory


def _memory_invalid(exc: MemoryInvalid) -> ValidationError:
    return ValidationError({"memory": [str(exc)]})


@doc.documented(
    get=extend_schema(
        summary="List your memories",
        operation_id="memories_list",
        parameters=[s.MemoryListQuerySerializer],
        responses={200: doc.MemoryPageSerializer, **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`.")},
    ),
    post=extend_schema(
        summary="Create a memory",
        request=s.MemoryWriteSerializer,
        responses={200: doc.MemorySerializer, **doc.agno_errors(*doc.BODY_ERRORS, 401)},
    ),
    delete=extend_schema(
        summary="Delete memories",
        operation_id="memories_bulk_destroy",
        request=s.MemoryBulkDeleteSerializer,
        responses={
            204: OpenApiResponse(description="Deleted (ids that are not yours are skipped)."),
            **doc.agno_errors(*doc.BODY_ERRORS, 401, 404, e404="An id that is not a memory id."),
        },
    ),
)
class MemoryListView(AgnoView):
    """`GET /memories` (agno's page of `UserMemorySchema`; `agent_id`, comma-separated `topics`,
    `search_content`), `POST /memories` (create; 200 like agno), `DELETE /memories` (bulk, 204)."""

    def prepare_get(self, request: Any) -> dict[str, Any]:
        q = self.query(s.MemoryListQuerySerializer)
        _check_db_id(q.get("db_id"))
        limit = min(q["limit"], MAX_PAGE_SIZE)
        page = max(q["page"], 1)
        if q.get("team_id"):
            return s.page_json([], page=page, limit=limit, total=0)
        memories = memory_list_for_user(
            user=request.user,
            search=q.get("search_content") or None,
            agent_id=q.get("agent_id") or None,
            allowed=allowed_for(request.auth, request.user),
        )
        topics = [t.strip() for t in (q.get("topics") or "").split(",") if t.strip() and "\x00" not in t]
        if topics:
            any_topic = Q()
            for topic in topics:
                any_topic |= Q(topics_index__contains=f"|{topic.lower()}|")
            memories = memories.filter(any_topic)
        field = MEMORY_SORT_FIELDS.get(q["sort_by"], "updated_at")
        memories = memories.order_by(f"-{field}" if q["sort_order"] == "desc" else field, "-created_at")
        rows, total = _page_of(memories, page=page, limit=limit)
        items = [s.memory_json(m) for m in rows]
        return s.page_json(items, page=page, limit=limit, total=total)

    async def get(self, request: Any) -> Any:
        return Response(self.prepared)

    def prepare_post(self, request: Any) -> dict[str, Any]:
        body = s.MemoryWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            memory = memory_create(
                user=request.user,
                memory=body.validated_data["memory"],
                topics=body.validated_data.get("topics"),
                source=Memory.Source.USER,
            )
        except MemoryInvalid as exc:
            raise _memory_invalid(exc) from None
        return s.memory_json(memory)

    async def post(self, request: Any) -> Any:
        return Response(self.prepared)

    def prepare_delete(self, request: Any) -> None:
        body = s.MemoryBulkDeleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = [_parse_uuid(i, "Memory") for i in body.validated_data["memory_ids"]]
        for memory in memory_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user)).filter(
            pk__in=ids
        ):
            memory_delete(memory=memory)

    async def delete(self, request: Any) -> Any:
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)


MEMORY_404 = "Not your memory."


@doc.documented(
    get=extend_schema(
        summary="Get a memory", responses={200: doc.MemorySerializer, **doc.agno_errors(401, 404, e404=MEMORY_404)}
    ),
    patch=extend_schema(
        summary="Replace a memory's text and topics",
        request=s.MemoryWriteSerializer,
        responses={200: doc.MemorySerializer, **doc.agno_errors(*doc.BODY_ERRORS, 401, 404, e404=MEMORY_404)},
    ),
    delete=extend_schema(
        summary="Delete a memory",
        responses={204: OpenApiResponse(description="Deleted."), **doc.agno_errors(401, 404, e404=MEMORY_404)},
    ),
)
class MemoryDetailView(AgnoView):
    """`GET`, `PATCH` (replaces text and topics, as agno does) and `DELETE /memories/{id}`."""

    def prepare_get(self, request: Any, memory_id: str) -> dict[str, Any]:
        return s.memory_json(_memory_or_404(request, memory_id))

    async def get(self, request: Any, memory_id: str) -> Any:
        return Response(self.prepared)

    def prepare_patch(self, request: Any, memory_id: str) -> dict[str, Any]:
        body = s.MemoryWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        memory = _memory_or_404(request, memory_id)
        try:
            memory = memory_update(
                memory=memory, text=body.validated_data["memory"], topics=body.validated_data.get("topics") or []
            )
        except MemoryInvalid as exc:
            raise _memory_invalid(exc) from None
        return s.memory_json(memory)

    async def patch(self, request: Any, memory_id: str) -> Any:
        return Response(self.prepared)

    def prepare_delete(self, request: Any, memory_id: str) -> None:
        memory_delete(memory=_memory_or_404(request, memory_id))

    async def delete(self, request: Any, memory_id: str) -> Any:
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)


@doc.documented(
    get=extend_schema(
        summary="List your memories' topics",
        responses={200: {"type": "array", "items": {"type": "string"}}, **doc.agno_errors(401)},
    ),
)
class MemoryTopicsView(PreparedGet, AgnoView):
    """`GET /memory_topics`: the distinct topics of my memories, sorted."""

    def prepare_get(self, request: Any) -> list[str]:
        topics: set[str] = set()
        memories = memory_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        for values in memories.values_list("topics", flat=True):
            topics.update(str(t) for t in values or [])
        return sorted(topics)


@doc.documented(
    get=extend_schema(
        summary="Preview a session's runs",
        parameters=[s.SessionRunsQuerySerializer],
        responses={200: doc.RunPreviewSerializer(many=True), **doc.agno_errors(401, 404, 422, e404=SESSION_404)},
    ),
)
class SessionRunPreviewsView(PreparedGet, _SessionView):
    """`GET /sessions/{id}/run-previews`: the runs `GET /sessions/{id}/runs` lists (same filters),
    in agno's light `SessionRunPreviewSchema` (ids, status, time, input and output cut short), for
    clients that poll a session."""

    def prepare_get(self, request: Any, session_id: str) -> list[dict[str, Any]]:
        q = self.query(s.SessionRunsQuerySerializer)
        session = self.session(request, session_id)
        runs = list(session.runs.all())
        listed = [run for run in runs if session.workflow_id is None or run.parent_run_id is None]
        return [s.run_preview_json(run) for run in listed if _run_kept(run, q)]


def _run_kept(run: Any, q: dict[str, Any]) -> bool:
    """agno's run filters: `created_after` / `created_before` (Unix seconds), `status` (any of)."""
    created = int(run.created_at.timestamp())
    if "created_after" in q and created < q["created_after"]:
        return False
    if "created_before" in q and created > q["created_before"]:
        return False
    return not q.get("status") or s.RUN_STATUS.get(run.status, "") in q["status"]


# ---- A component's runs ------------------------------------------------------------------------


def _component_session(request: Any, kind: str, component_id: str, session_id: str) -> Any:
    """The caller's session `session_id` of that agent, team or workflow (agno asks for it with a
    component's runs), with its runs: a session that is not the caller's, or not of that component,
    is a 404."""
    runs.component_get_active(kind, _no_nul(component_id), allowed=allowed_for(request.auth, request.user))
    session = session_detail_for_user(
        user=request.user,
        session_id=_parse_uuid(session_id, "Session"),
        kind=kind,
        allowed=allowed_for(request.auth, request.user),
    )
    if session is None or s.component_of(session).slug != component_id:
        raise NotFound("Session not found")
    return session


def component_runs_json(view: AgnoView, request: Any, kind: str, component_id: str) -> list[dict[str, Any]]:
    """`GET /{agents,teams,workflows}/{id}/runs?session_id=…[&status=…]` (served by the run view,
    whose route it shares): that component's own runs in the session (not its members' or steps'),
    in agno's run schemas."""
    q = view.query(s.ComponentRunsQuerySerializer)
    session = _component_session(request, kind, component_id, q["session_id"])
    runs_ = list(session.runs.all())
    children = s.runs_by_parent(runs_)
    wanted = (q.get("status") or "").upper()
    return [
        s.stored_run_json(run, children=children)
        for run in runs_
        if run.parent_run_id is None and (not wanted or s.RUN_STATUS.get(run.status, "") == wanted)
    ]


@doc.documented(
    get=extend_schema(
        summary="Get a component's run",
        parameters=[s.ComponentRunQuerySerializer],
        responses={
            200: doc.StoredRunSerializer,
            **doc.agno_errors(401, 404, 422, e404="Unknown component, not your session of it, or no such run."),
        },
    ),
)
class ComponentRunDetailView(PreparedGet, AgnoView):
    """`GET /{agents,teams,workflows}/{id}/runs/{run_id}?session_id=…`: one run of that component
    in the session, in agno's run schema of its kind."""

    def prepare_get(self, request: Any, kind: str, run_id: str, **ids: str) -> dict[str, Any]:
        component_id = ids[f"{kind}_id"]  # agno's path parameter names: agent_id, team_id, workflow_id
        q = self.query(s.ComponentRunQuerySerializer)
        session = _component_session(request, kind, component_id, q["session_id"])
        found = _stored_run_json(session, _parse_uuid(run_id, "Run"), top_level=True)
        if found is None:
            raise NotFound("Run not found")
        return found


# ---- About this OS, and memory statistics ---------------------------------------------------------


@doc.documented(
    get=extend_schema(summary="About this OS", auth=[], responses={200: doc.InfoSerializer, **doc.agno_errors(401)}),
)
class InfoView(PreparedGet, AgnoView):
    """`GET /info`: agno's `InfoResponse`: this OS's id, name, versions, and how many agents, teams
    and workflows the caller can run (anonymous callers, where OS_PUBLIC_READ allows them: the
    unrestricted ones). `auth_mode` is `security_key`: a Bearer token is needed for the rest."""

    permission_classes = [PublicReadOrAuthenticated]

    def prepare_get(self, request: Any) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            agno_version = version("agno")
        except PackageNotFoundError:  # agno is a test dependency: a production site may not have it
            agno_version = s.AGNO_API_VERSION
        return s.info_json(
            agents=len(_runnable_agents(request)),
            teams=len(_teams_json(request)),
            workflows=len(_workflows_json(request)),
            agno_version=agno_version,
        )


@doc.documented(
    get=extend_schema(
        summary="Your memory statistics",
        parameters=[s.PageQuerySerializer],
        responses={200: doc.UserStatsPageSerializer, **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`.")},
    ),
)
class UserMemoryStatsView(PreparedGet, AgnoView):
    """`GET /user_memory_stats`: agno's page of `UserStatsSchema`. Everyone's memories are their
    own, so the page has one row at most: the caller's count and latest update (none when the
    caller has no memories)."""

    def prepare_get(self, request: Any) -> dict[str, Any]:
        from django.db.models import Count, Max

        q = self.query(s.PageQuerySerializer)
        _check_db_id(q.get("db_id"))
        limit, page = min(q["limit"], MAX_PAGE_SIZE), max(q["page"], 1)
        memories = memory_list_for_user(user=request.user, allowed=allowed_for(request.auth, request.user))
        stats = memories.order_by().aggregate(total=Count("pk"), last=Max("updated_at"))
        rows = []
        if stats["total"]:
            rows = [
                {
                    "user_id": s.user_id_of(request.user.pk),
                    "total_memories": stats["total"],
                    "last_memory_updated_at": s.iso(stats["last"]),
                }
            ]
        return s.page_json(rows[(page - 1) * limit : page * limit], page=page, limit=limit, total=len(rows))


# ---- Fork ------------------------------------------------------------------------------------------


class ForkQuerySerializer(s.serializers.Serializer):
    run_id = s.serializers.UUIDField(
        required=False, help_text="Copy the runs up to and including this one (this site's addition; agno: all)."
    )
    user_id = s.serializers.CharField(required=False, allow_blank=True, help_text="Ignored: the fork is yours.")


class ForkSerializer(s.serializers.Serializer):
    session_id = s.serializers.CharField()
    forked_from_session_id = s.serializers.CharField()


@doc.documented(
    post=extend_schema(
        summary="Fork a session",
        parameters=[ForkQuerySerializer],
        request=None,
        responses={
            200: ForkSerializer,
            **doc.agno_errors(
                400,
                401,
                404,
                422,
                e400="No finished run to copy.",
                e404="Unknown component, or not your session of it.",
            ),
        },
    ),
)
class SessionForkView(AgnoView):
    """`POST /{agents,teams}/{id}/sessions/{session_id}/fork`: a new session of yours with copies of
    the session's finished runs (up to `run_id` when given), so a conversation can go on another
    way; the original is untouched. agno's answer: the new `session_id` and `forked_from_session_id`."""

    def prepare_post(self, request: Any, kind: str, session_id: str, **ids: str) -> dict[str, Any]:
        component_id = ids[f"{kind}_id"]
        q = self.query(ForkQuerySerializer)
        source = _component_session(request, kind, component_id, session_id)
        fork = session_fork(session=source, user=request.user, up_to_run_id=q.get("run_id"))
        return {"session_id": str(fork.pk), "forked_from_session_id": str(source.pk)}

    async def post(self, request: Any, **kwargs: str) -> Any:
        return Response(self.prepared)


# ---- Database ----------------------------------------------------------------------------------


class MigrateSerializer(s.serializers.Serializer):
    target_version = s.serializers.CharField(required=False, allow_null=True, allow_blank=True)


class MessageSerializer(s.serializers.Serializer):
    message = s.serializers.CharField()


@doc.documented(
    post=extend_schema(
        summary="Check that the database is migrated",
        request=MigrateSerializer,
        responses={
            200: MessageSerializer,
            **doc.agno_errors(
                401,
                403,
                404,
                409,
                e404="Not this site's `db_id`.",
                e409="Migrations are pending (`migrations_pending`).",
            ),
        },
    ),
)
class DatabaseMigrateView(AgnoView):
    """`POST /databases/{db_id}/migrate` (staff): agno migrates its tables here; this site's schema
    is Django's, migrated by `manage.py migrate` when it is deployed, never from a request (several
    processes, long locks). So this answers 200 when the database is at the latest version, and a
    409 naming the pending migrations otherwise. `target_version` is ignored."""

    permission_classes = [permissions.IsAdminUser]

    def prepare_post(self, request: Any, db_id: str) -> dict[str, Any]:
        from django.db import DEFAULT_DB_ALIAS

        from agents_app.health import _unapplied_migrations

        if db_id != s.DB_ID:
            raise NotFound("Database not found")
        pending = _unapplied_migrations(DEFAULT_DB_ALIAS)
        if pending:
            raise MigrationsPending(f"Migrations are pending: {', '.join(pending[:10])}. Run `manage.py migrate`.")
        return {"message": "Database is at the latest version"}

    async def post(self, request: Any, db_id: str) -> Any:
        return Response(self.prepared)


class MigrationsPending(ConflictError):
    code = "migrations_pending"


# ---- Memory consolidation ----------------------------------------------------------------------


class OptimizeMemoriesSerializer(s.serializers.Serializer):
    """agno's `OptimizeMemoriesRequest`: `user_id` is ignored (your own memories); `model` names one
    of this site's model configurations, as "provider:model_id" or by its name (default:
    AGENTOS["MEMORY_OPTIMIZE_MODEL"])."""

    user_id = s.serializers.CharField(required=False, allow_null=True, allow_blank=True)
    model = s.serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=300)
    apply = s.serializers.BooleanField(default=True)


class OptimizeMemoriesResultSerializer(s.serializers.Serializer):
    memories = doc.MemorySerializer(many=True)
    memories_before = s.serializers.IntegerField()
    memories_after = s.serializers.IntegerField()
    tokens_before = s.serializers.IntegerField()
    tokens_after = s.serializers.IntegerField()
    tokens_saved = s.serializers.IntegerField()
    reduction_percentage = s.serializers.FloatField()


class OptimizationQueuedSerializer(s.serializers.Serializer):
    optimization_id = s.serializers.CharField()
    status = s.serializers.CharField()


def _optimize_model(name: str | None) -> Any:
    from agents_app.models import ModelConfig
    from sessions_app.conf import agentos_settings

    wanted = (name or "").strip() or str(agentos_settings.MEMORY_OPTIMIZE_MODEL or "").strip()
    if not wanted or "\x00" in wanted:
        raise ValidationError({"model": ["Name a model (provider:model_id, or a model configuration's name)."]})
    provider, _, model_id = wanted.partition(":")
    found = ModelConfig.objects.filter(name=wanted).first()
    if found is None and model_id:
        found = ModelConfig.objects.filter(provider=provider, model_id=model_id).order_by("pk").first()
    if found is None:
        raise ValidationError({"model": [f"No model configuration {wanted!r} on this site."]})
    return found


@doc.documented(
    post=extend_schema(
        summary="Consolidate your memories",
        request=OptimizeMemoriesSerializer,
        responses={
            200: OptimizeMemoriesResultSerializer,
            202: OpenApiResponse(OptimizationQueuedSerializer, description="Still running after the wait."),
            **doc.agno_errors(*doc.BODY_ERRORS, 401, 404, 502, e404="You have no memories.", e502="The model failed."),
        },
    ),
)
class OptimizeMemoriesView(AgnoView):
    """`POST /optimize-memories`: a model merges your memories (duplicates, contradictions) into
    fewer; with `apply` they replace the old ones. The work is recorded (MemoryOptimization) and
    done by a Celery worker; this request waits up to AGENTOS["MEMORY_OPTIMIZE_WAIT_SECONDS"] for it
    and answers agno's `OptimizeMemoriesResponse`, or a 202 with the record's id if it takes longer
    (tokens are estimated at four characters each)."""

    def prepare_post(self, request: Any) -> Any:
        from sessions_app.services import memory_optimization_create

        body = OptimizeMemoriesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = _optimize_model(body.validated_data.get("model"))
        if not Memory.objects.filter(user=request.user).exists():
            raise NotFound(f"No memories found for user {s.user_id_of(request.user.pk)}")
        return memory_optimization_create(user=request.user, model_config=config, apply=body.validated_data["apply"])

    async def post(self, request: Any) -> Any:
        import asyncio
        import time

        from agents_app.memory import memory_optimization_publish
        from sessions_app.conf import agentos_settings
        from sessions_app.models import MemoryOptimization

        row = self.prepared
        await db_call(memory_optimization_publish, row.pk)
        deadline = time.monotonic() + float(agentos_settings.MEMORY_OPTIMIZE_WAIT_SECONDS)
        done = (MemoryOptimization.Status.COMPLETED, MemoryOptimization.Status.FAILED)
        while True:
            row = await MemoryOptimization.objects.aget(pk=row.pk)
            if row.status in done or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if row.status == MemoryOptimization.Status.FAILED:
            return JsonResponse(
                {"detail": f"Failed to optimize memories: {row.error}", "code": "model_error"}, status=502
            )
        if row.status != MemoryOptimization.Status.COMPLETED:
            return JsonResponse({"optimization_id": str(row.pk), "status": row.status}, status=202)
        return Response(await db_call(s.optimization_json, row))
