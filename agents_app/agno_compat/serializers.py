"""Our data in agno AgentOS's shapes, and the input of its endpoints.

Output: plain functions from our models and run events to the JSON agno's server emits and its
client parses (`AgentResponse`, `TeamResponse`, `WorkflowResponse`, `ConfigResponse`, `RunOutput`,
run events, `SessionSchema`, the agent, team and workflow session details, `RunSchema`,
`TeamRunSchema`, `WorkflowRunSchema`, the `data` + `meta` page). Like agno's server, keys whose
value would be null are left out. Input: DRF serializers for agno's form fields and query
parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from rest_framework import serializers
from rest_framework.fields import empty

from agents_app import events as ev
from agents_app.models import Agent
from agents_app.pricing import as_number
from agents_app.tools.registry import tool_registry
from sessions_app.inputs import InvalidInput, clean_json, parse_json
from sessions_app.models import Message, Run, Session

# agno's RunStatus values, from our Run.Status.
RUN_STATUS = {
    Run.Status.RUNNING: "RUNNING",
    Run.Status.COMPLETED: "COMPLETED",
    Run.Status.ERROR: "ERROR",
    Run.Status.CANCELLED: "CANCELLED",
    Run.Status.PAUSED: "PAUSED",
}
AGNO_STATUSES = frozenset({"PENDING", "RUNNING", "COMPLETED", "PAUSED", "CANCELLED", "ERROR", "REGENERATED"})

# agno names the database a component stores its sessions in; we have one. Agent UI needs an id
# here before it lists an agent's sessions.
DB_ID = "default"
OS_ID = "agentos-django"

_TOOL_EVENTS = ("ToolCallCompleted", "ToolCallError")
_TEAM_TOOL_EVENTS = ("TeamToolCallCompleted", "TeamToolCallError")


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop null values, as agno's server does (response_model_exclude_none)."""
    return {k: v for k, v in data.items() if v is not None}


def iso(value: datetime | None) -> str | None:
    """agno's timestamp format in session and run listings: UTC, seconds, a `Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def user_id_of(user_pk: Any) -> str:
    """agno's user ids are strings; ours are the user's primary key."""
    return str(user_pk)


# ---- Agents and the OS config -------------------------------------------------------------------


def model_json(agent: Agent) -> dict[str, Any]:
    """Parsed as agno's `ModelResponse` (name, model, provider) by AgentResponse and as its `Model`
    (id, provider) by the summaries; both keys are given so either parses fully."""
    config = agent.model
    return {"name": config.name, "model": config.model_id, "id": config.model_id, "provider": config.provider}


def _tools_json(agent: Agent) -> list[dict[str, Any]]:
    tools = []
    for name in agent.tools:
        tool = tool_registry.get(name)
        if tool is not None:
            tools.append({"name": tool.name, "description": tool.description, "parameters": tool.parameters})
    return tools


def agent_json(agent: Agent, *, staff: bool) -> dict[str, Any]:
    """agno's `AgentResponse`. Everyone sees what the REST API shows any user (name, description,
    model, tools, output schema); staff also see the instructions and the history setting."""
    tools = _tools_json(agent)
    data: dict[str, Any] = {
        "id": agent.slug,
        "name": agent.name,
        "db_id": DB_ID,
        "description": agent.description or None,
        "model": model_json(agent),
        "tools": {"tools": tools} if tools else None,
        "response_settings": {"output_schema": agent.output_schema} if agent.output_schema else None,
    }
    if staff:
        data["tools"] = {"tools": tools, "tool_call_limit": agent.max_tool_calls}
        data["sessions"] = {"add_history_to_context": agent.history_runs > 0, "num_history_runs": agent.history_runs}
        data["system_message"] = {"instructions": agent.instructions} if agent.instructions else None
    return _compact(data)


def agent_summary_json(agent: Agent) -> dict[str, Any]:
    """agno's `AgentSummaryResponse` (what `AgentOSClient.list_agents` and `/config` parse)."""
    return _compact(
        {
            "id": agent.slug,
            "name": agent.name,
            "description": agent.description or None,
            "db_id": DB_ID,
            "model": model_json(agent),
        }
    )


def team_json(team: Any, members_of: dict[int, list[Any]], *, depth: int = 0) -> dict[str, Any]:
    """agno's `TeamResponse` (and, its first keys, `TeamSummaryResponse`): the team with its members,
    agents as agent summaries and teams nested the same way."""
    members = []
    for m in members_of.get(team.pk, []):
        if m.agent_id:
            members.append(agent_summary_json(m.agent))
        elif depth < 5:
            members.append(team_json(m.member_team, members_of, depth=depth + 1))
    return _compact(
        {
            "id": team.slug,
            "name": team.name,
            "description": team.description or None,
            "db_id": DB_ID,
            "mode": team.mode,
            "model": model_json(team),
            "members": members,
        }
    )


def team_detail_json(team: Any, members_of: dict[int, list[Any]], *, staff: bool) -> dict[str, Any]:
    """agno's `TeamResponse` for `GET /teams/{id}`: the listing's fields and, as for agents, what
    only staff see: the leader's instructions and its history setting."""
    data = team_json(team, members_of)
    if staff:
        data["sessions"] = {"add_history_to_context": team.history_runs > 0, "num_history_runs": team.history_runs}
        if team.instructions:
            data["system_message"] = {"instructions": team.instructions}
    return data


def _step_json(node: Any) -> dict[str, Any]:
    step = node.step
    data: dict[str, Any] = {"name": step.name, "type": step.kind}
    if step.agent_id:
        data["agent_id"] = step.agent.slug
    if step.team_id:
        data["team_id"] = step.team.slug
    if step.function:
        data["function"] = step.function
    if node.children:
        data["steps"] = [_step_json(child) for child in node.children]
    return data


def workflow_json(workflow: Any, steps: list[Any]) -> dict[str, Any]:
    """agno's `WorkflowResponse` (and, its first keys, `WorkflowSummaryResponse`)."""
    return _compact(
        {
            "id": workflow.slug,
            "name": workflow.name,
            "description": workflow.description or None,
            "db_id": DB_ID,
            "steps": [_step_json(node) for node in steps],
        }
    )


def config_json(
    agents: list[Agent],
    *,
    name: str,
    teams: list[dict[str, Any]] | None = None,
    workflows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """agno's `ConfigResponse`: what this OS serves. No interfaces."""
    models: dict[tuple[str, str], dict[str, str]] = {}
    for agent in agents:
        models.setdefault(
            (agent.model.model_id, agent.model.provider), {"id": agent.model.model_id, "provider": agent.model.provider}
        )
    return {
        "os_id": OS_ID,
        "name": name,
        "available_models": list(models.values()),
        "os_database": DB_ID,
        "databases": [DB_ID],
        "agents": [agent_summary_json(a) for a in agents],
        "teams": teams or [],
        "workflows": workflows or [],
        "interfaces": [],
    }


def health_json(started_at: datetime, readiness: dict[str, Any]) -> dict[str, Any]:
    """agno's health answer (`status`, `instantiated_at`) with our readiness report added: `checks`,
    and `detail`/`code` when not ready (agents_app.health)."""
    return {**readiness, "instantiated_at": iso(started_at)}


# ---- Runs as they happen -------------------------------------------------------------------------


_STATUS = {"completed": "COMPLETED", "error": "ERROR", "cancelled": "CANCELLED", "paused": "PAUSED"}


def _content(result: dict[str, Any]) -> Any:
    """Like agno: a run that did not complete has its partial text, else its error message."""
    if result["status"] == "completed" or result.get("content"):
        return result.get("content")
    return (result.get("error") or {}).get("message")


def _member_json(result: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    key = "team_id" if member["member_type"] == "team" else "agent_id"
    return {
        "run_id": member["run_id"],
        key: member["member_id"],
        "session_id": result["session_id"],
        "parent_run_id": result["run_id"],
        "content": member["content"],
        "status": _STATUS.get(member["status"], "ERROR"),
    }


def _step_output_json(result: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    failed = step.get("status") == "error" and "error" in result
    return {
        "step_name": step["step_name"],
        "step_type": step["step_type"],
        "content": step.get("content"),
        "step_run_id": step.get("run_id"),
        "success": step.get("status") == "completed",
        **({"error": result["error"]["message"]} if failed else {}),
    }


def output_json(handle: Any, events: list[ev.RunEvent], result: dict[str, Any]) -> dict[str, Any]:
    """A finished run of any kind (`result`: `handle.result(events)`) as agno's run output:
    `RunOutput`, `TeamRunOutput` or `WorkflowRunOutput` (what agno's client parses), plus our
    `error: {type, message}` on failures (agno's client ignores it)."""
    kind = handle.kind
    completed = result["status"] == "completed"
    body: dict[str, Any] = {
        "run_id": result["run_id"],
        f"{kind}_id": result[f"{kind}_id"],
        f"{kind}_name": result[f"{kind}_name"],
        "session_id": result["session_id"],
        "user_id": user_id_of(handle.user_id),
        "input": handle.message if kind == "workflow" else {"input_content": handle.message},
        "content": _content(result),
        "content_type": result["content_type"],
        "created_at": result["created_at"],
        "status": _STATUS.get(result["status"], "ERROR"),
    }
    if kind == "workflow":
        body["step_results"] = [_step_output_json(result, step) for step in result["step_results"]]
        body["session_state"] = result["session_state"]
        if result["status"] == "paused":  # agno's paused WorkflowRunOutput: where it waits, and for what
            for key in ("paused_step_name", "paused_step_index", "step_requirements", "pause_kind"):
                body[key] = result.get(key)
    else:
        body.update(
            model=result["model"] or None,
            model_provider=result["model_provider"] or None,
            metrics=result["metrics"] if completed else None,
        )
    if kind == "team":
        body["member_responses"] = [_member_json(result, member) for member in result["member_runs"]]
        if result["status"] == "paused":  # agno's paused TeamRunOutput: its members' calls that wait
            body["tools"] = result["tools"] or None
            body["requirements"] = result["requirements"] or None
    if kind == "agent":
        tools = [e.tool for e in events if isinstance(e, ev.ToolCallCompleted | ev.ToolCallError)]
        if result["status"] == "paused":  # agno's paused RunOutput: the calls waiting, and their requirements
            tools += result["tools"]
            body["requirements"] = result["requirements"] or None
        body["tools"] = tools or None
    if "error" in result:
        body["error"] = result["error"]
    return _compact(body) if kind == "agent" else body


# ---- Sessions and stored runs --------------------------------------------------------------------


def component_of(obj: Session | Run) -> Any:
    """The agent, team or workflow a session or run belongs to (select_related them)."""
    return obj.team if obj.team_id else obj.workflow if obj.workflow_id else obj.agent


def session_json(session: Session) -> dict[str, Any]:
    """agno's `SessionSchema` (one item of `GET /sessions`): `session_type` and the one of
    `agent_id` / `team_id` / `workflow_id` that names what the session belongs to."""
    kind = session.component_type
    return _compact(
        {
            "session_id": str(session.pk),
            "session_name": session.name,
            "session_state": session.state or {},
            "created_at": iso(session.created_at),
            "updated_at": iso(session.updated_at),
            "session_type": kind,
            "user_id": user_id_of(session.user_id),
            f"{kind}_id": component_of(session).slug,
        }
    )


def message_json(message: Message) -> dict[str, Any]:
    """A stored message as agno's `Message.to_dict()` shows it."""
    return _compact(
        {
            "role": message.role,
            "content": message.content if message.content or not message.tool_calls else None,
            "tool_calls": message.tool_calls or None,
            "tool_call_id": message.tool_call_id or None,
            "tool_name": message.name or None,
            "created_at": epoch(message.created_at),
        }
    )


def _metrics(run: Run) -> dict[str, Any]:
    """agno's `RunMetrics` of a stored run: its own model calls (agno's `cost`, a number; a team's
    members' and a workflow's steps' runs carry their own, as in agno)."""
    return {
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "total_tokens": run.total_tokens,
        "cache_read_tokens": run.cache_read_tokens,
        "cost": as_number(run.cost),
        "time_to_first_token": run.time_to_first_token,
        "duration": run.duration,
    }


def _stored_content(run: Run) -> Any:
    """What a stored run answered: its JSON output, its text, or (failed, nothing said) its error."""
    if run.output_json is not None:
        return run.output_json
    return run.output or run.error or None


def run_json(run: Run) -> dict[str, Any]:
    """A stored agent's or team's run as agno's `RunSchema` / `TeamRunSchema` (an item of `GET
    /sessions/{id}/runs`; agno's client tells them apart by `team_id`). A team's members' runs are
    separate items, with `parent_run_id`. `messages` must be prefetched in order."""
    stored = run.events or []
    team = run.team if run.team_id else None
    tool_events = _TEAM_TOOL_EVENTS if team is not None else _TOOL_EVENTS
    component = team or run.agent
    return _compact(
        {
            "run_id": str(run.pk),
            "parent_run_id": str(run.parent_run_id) if run.parent_run_id else None,
            ("team_id" if team is not None else "agent_id"): component.slug,
            "user_id": user_id_of(run.user_id),
            "session_id": str(run.session_id),
            "status": RUN_STATUS.get(run.status, run.status.upper()),
            "run_input": run.input,
            "content": _stored_content(run),
            "run_response_format": "json" if run.output_json is not None else "text",
            "metrics": _metrics(run),
            "messages": [message_json(m) for m in run.messages.all()] or None,
            "tools": [
                e["tool"]
                for e in stored
                if e.get("event") in tool_events and not e.get("parent_run_id") and "tool" in e
            ]
            or None,
            "events": _named_events(run, "team_name" if team is not None else "agent_name", component.name),
            "created_at": iso(run.created_at),
        }
    )


def session_detail_json(session: Session) -> dict[str, Any]:
    """agno's `AgentSessionDetailSchema` or `TeamSessionDetailSchema` (`GET /sessions/{id}`, rename):
    a team's chat history is its own conversation (its top-level runs' messages, not its members').
    The session's runs and their messages must be prefetched (sessions_app.selectors)."""
    runs, totals = _session_common(session)
    kind, component = session.component_type, component_of(session)
    return _compact(
        {
            "user_id": user_id_of(session.user_id),
            "agent_session_id": str(session.pk) if kind == "agent" else None,
            "session_id": str(session.pk),
            "session_name": session.name,
            "session_state": session.state or {},
            "session_summary": _summary_json(session),
            f"{kind}_id": component.slug,
            "total_tokens": totals["total_tokens"],
            f"{kind}_data": {"name": component.name, f"{kind}_id": component.slug},
            "metrics": totals,
            "metadata": session.metadata or None,
            "chat_history": [message_json(m) for r in runs if r.parent_run_id is None for m in r.messages.all()],
            "created_at": iso(session.created_at),
            "updated_at": iso(session.updated_at),
        }
    )


_WORKFLOW_TERMINALS = ("WorkflowCompleted", "WorkflowError", "WorkflowCancelled")


def _named_events(run: Run, name_key: str, name: str) -> list[dict[str, Any]] | None:
    """A team's or workflow's stored events as its stream sent them: its own events carry its name
    (`team_name` / `workflow_name`), its members' and steps' nested events are left as they are."""
    return [e if e.get("parent_run_id") else {**e, name_key: name} for e in run.events or []] or None


def _step_results_json(run: Run) -> list[dict[str, Any]]:
    """The steps a stored workflow run went through, as agno's `StepOutput` dicts: from its
    terminal event's `step_results` when it has them, else from its `StepCompleted` events."""
    stored = run.events or []
    terminal = next((e for e in reversed(stored) if e.get("event") in _WORKFLOW_TERMINALS), {})
    steps = terminal.get("step_results") or [
        {**e, "status": "completed", "run_id": None} for e in stored if e.get("event") == "StepCompleted"
    ]
    return [
        _compact(
            {
                "step_name": step.get("step_name"),
                "step_type": step.get("step_type"),
                "content": step.get("content"),
                "step_run_id": step.get("run_id"),
                "success": step.get("status") == "completed",
            }
        )
        for step in steps
    ]


def workflow_run_json(run: Run, *, step_runs: list[Run]) -> dict[str, Any]:
    """A stored workflow run as agno's `WorkflowRunSchema`: `step_results` (agno's `StepOutput`s)
    and, as `step_executor_runs`, the runs of the agents and teams its steps ran (`step_runs`, its
    child runs, each in its own schema). `messages` must be prefetched in order."""
    return _compact(
        {
            "run_id": str(run.pk),
            "workflow_id": run.workflow.slug,
            "user_id": user_id_of(run.user_id),
            "session_id": str(run.session_id),
            "status": RUN_STATUS.get(run.status, run.status.upper()),
            "run_input": run.input,
            "content": _stored_content(run),
            "content_type": "json" if run.output_json is not None else "str",
            "metrics": _metrics(run),
            "step_results": _step_results_json(run),
            "step_executor_runs": [stored_run_json(child, children={}) for child in step_runs],
            "events": _named_events(run, "workflow_name", run.workflow.name),
            "created_at": iso(run.created_at),
        }
    )


def stored_run_json(run: Run, *, children: dict[Any, list[Run]]) -> dict[str, Any]:
    """A stored run in the schema of what ran it: `RunSchema` (agent), `TeamRunSchema`,
    `WorkflowRunSchema` (with its step runs from `children`, child runs by parent run id)."""
    if run.workflow_id:
        return workflow_run_json(run, step_runs=children.get(run.pk, []))
    return run_json(run)


def runs_by_parent(runs: list[Run]) -> dict[Any, list[Run]]:
    children: dict[Any, list[Run]] = {}
    for run in runs:
        if run.parent_run_id:
            children.setdefault(run.parent_run_id, []).append(run)
    return children


def session_runs_json(session: Session, *, keep: Callable[[Run], bool] | None = None) -> list[dict[str, Any]]:
    """The runs `GET /sessions/{id}/runs` lists, oldest first, as agno's server lists them: every
    run of an agent or team session (a team's member runs too, each with `parent_run_id`); for a
    workflow session its workflow runs, whose step runs are inside them (`step_executor_runs`).
    `keep`: a filter on the listed runs. Runs and messages must be prefetched."""
    runs = list(session.runs.all())
    children = runs_by_parent(runs) if session.workflow_id else {}
    listed = [run for run in runs if session.workflow_id is None or run.parent_run_id is None]
    return [stored_run_json(run, children=children) for run in listed if keep is None or keep(run)]


def _session_common(session: Session) -> tuple[list[Run], dict[str, Any]]:
    """The session's runs and its token and cost totals, agno's `SessionMetrics` (every run counts
    only its own model calls, so the sum over a team's or workflow's member and step runs counts
    each call once, as agno adds its members' metrics to the session's)."""
    runs = list(session.runs.all())
    totals = {
        "input_tokens": sum(r.input_tokens for r in runs),
        "output_tokens": sum(r.output_tokens for r in runs),
        "total_tokens": sum(r.total_tokens for r in runs),
        "cache_read_tokens": sum(r.cache_read_tokens for r in runs),
        "cost": as_number(sum((r.cost for r in runs), Decimal(0))),
    }
    return runs, totals


def _summary_json(session: Session) -> dict[str, Any] | None:
    if not session.summary:
        return None
    return {"summary": session.summary, "topics": None, "updated_at": iso(session.summary_updated_at)}


def workflow_session_detail_json(session: Session) -> dict[str, Any]:
    """agno's `WorkflowSessionDetailSchema` (which has no chat history: a workflow's runs are read
    with `GET /sessions/{id}/runs`)."""
    _, totals = _session_common(session)
    state = session.state or {}
    return _compact(
        {
            "session_id": str(session.pk),
            "session_name": session.name,
            "user_id": user_id_of(session.user_id),
            "workflow_id": session.workflow.slug,
            "workflow_name": session.workflow.name,
            "session_data": {"session_state": state, "session_metrics": totals},
            "session_state": state,
            "metadata": session.metadata or None,
            "workflow_data": {
                "name": session.workflow.name,
                "workflow_id": session.workflow.slug,
                "description": session.workflow.description or None,
            },
            "created_at": iso(session.created_at),
            "updated_at": iso(session.updated_at),
        }
    )


def any_session_detail_json(session: Session) -> dict[str, Any]:
    """The detail schema of the session's kind (agent, team or workflow), as agno's server picks it."""
    if session.workflow_id:
        return workflow_session_detail_json(session)
    return session_detail_json(session)


def page_json(items: list[dict[str, Any]], *, page: int, limit: int, total: int) -> dict[str, Any]:
    """agno's `PaginatedResponse`: `data` and `meta`."""
    return {
        "data": items,
        "meta": {
            "page": page,
            "limit": limit,
            "total_pages": (total + limit - 1) // limit,
            "total_count": total,
            "search_time_ms": 0,
        },
    }


# ---- Input ---------------------------------------------------------------------------------------


class FormBooleanField(serializers.BooleanField):
    """A boolean whose default applies when an HTML form omits it (DRF reads an omitted form
    checkbox as False; agno's `stream` defaults to true)."""

    default_empty_html = empty


class JSONObjectStringField(serializers.Field):
    """A JSON object sent as a string in a form field (agno's `session_state`, `metadata`), or as
    an object in a JSON body."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:  # strict JSON, no NUL, lone surrogate or deep nesting (sessions_app.inputs)
            if isinstance(data, str):
                data = parse_json(data, field=self.field_name) if data.strip() else {}
            else:
                clean_json(data, field=self.field_name)
        except InvalidInput as exc:
            raise serializers.ValidationError(f"Must be a JSON object: {exc.detail}") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class RunFormSerializer(serializers.Serializer):
    """The form fields of `POST /agents/{agent_id}/runs` we read. `metadata` is checked but not
    stored (runs have no metadata here); other fields agno's client may send (stream_events,
    dependencies, knowledge_filters, ...) are accepted and ignored: the agent's behaviour is
    configured in the admin."""

    message = serializers.CharField(trim_whitespace=False, allow_blank=True)
    stream = FormBooleanField(default=True)
    session_id = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    # Always the authenticated user's; accepted so agno clients that send it are not refused.
    user_id = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    session_state = JSONObjectStringField(required=False)
    metadata = JSONObjectStringField(required=False)
    # agno's background runs (202, then poll) are not served: refused rather than run in the
    # foreground, which a client expecting a 202 would misread.
    background = FormBooleanField(default=False)

    def validate_background(self, value: bool) -> bool:
        if value:
            raise serializers.ValidationError("Background runs are not supported by this server; use stream=true.")
        return value


# Media inputs agno's client and UI can send; we do not take media (yet), and say so rather than
# answering as if the attachment had been seen.
MEDIA_FIELDS = ("images", "audio", "videos", "files", "input_files")


class SessionTypeQuerySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["agent", "team", "workflow"], required=False)
    db_id = serializers.CharField(required=False, allow_blank=True)


class SessionListQuerySerializer(SessionTypeQuerySerializer):
    component_id = serializers.CharField(required=False, allow_blank=True)
    session_name = serializers.CharField(required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, default=20)
    page = serializers.IntegerField(min_value=0, default=1)
    sort_by = serializers.CharField(required=False, default="created_at")
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], default="desc")


class SessionRunsQuerySerializer(SessionTypeQuerySerializer):
    created_after = serializers.IntegerField(required=False)
    created_before = serializers.IntegerField(required=False)
    status = serializers.ListField(child=serializers.CharField(), required=False)

    def validate_status(self, value: list[str]) -> set[str]:
        wanted = {v.upper() for v in value}
        unknown = sorted(wanted - AGNO_STATUSES)
        if unknown:
            raise serializers.ValidationError(
                f"Invalid status value(s) {unknown}; expected one of {sorted(AGNO_STATUSES)}."
            )
        return wanted


# ---- memories ----------------------------------------------------------------------------------


def memory_json(memory: Any) -> dict[str, Any]:
    """agno's `UserMemorySchema`."""
    return {
        "memory_id": str(memory.pk),
        "memory": memory.memory,
        "topics": list(memory.topics or []),
        "agent_id": memory.agent.slug if memory.agent_id else None,
        "team_id": None,
        "user_id": user_id_of(memory.user_id),
        "updated_at": iso(memory.updated_at),
    }


class MemoryListQuerySerializer(serializers.Serializer):
    agent_id = serializers.CharField(required=False, allow_blank=True)
    team_id = serializers.CharField(required=False, allow_blank=True)
    topics = serializers.CharField(required=False, allow_blank=True)
    search_content = serializers.CharField(required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, default=20)
    page = serializers.IntegerField(min_value=0, default=1)
    sort_by = serializers.CharField(required=False, default="updated_at")
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    db_id = serializers.CharField(required=False, allow_blank=True)


class MemoryWriteSerializer(serializers.Serializer):
    """agno's `UserMemoryCreateSchema` (create, and PATCH, which replaces text and topics)."""

    memory = serializers.CharField(min_length=1, max_length=2000)
    user_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    topics = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, allow_null=True, max_length=10
    )


class MemoryBulkDeleteSerializer(serializers.Serializer):
    memory_ids = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=1000)
    user_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class SessionRenameSerializer(serializers.Serializer):
    session_name = serializers.CharField(max_length=200, allow_blank=True)


# ---- Sessions: create, update, bulk delete, run previews ----------------------------------------

PREVIEW_CHARS = 280  # agno's preview length


def run_preview_json(run: Run) -> dict[str, Any]:
    """agno's `SessionRunPreviewSchema`: a run without messages, events or metrics, its input and
    output cut to agno's preview length."""
    content = _stored_content(run)
    if content is not None and not isinstance(content, str):
        content = orjson.dumps(content).decode()
    return _compact(
        {
            "run_id": str(run.pk),
            "parent_run_id": str(run.parent_run_id) if run.parent_run_id else None,
            f"{run.component_type}_id": component_of(run).slug,
            "user_id": user_id_of(run.user_id),
            "status": RUN_STATUS.get(run.status, run.status.upper()),
            "run_input": (run.input or "")[:PREVIEW_CHARS] or None,
            "content_preview": content[:PREVIEW_CHARS] if content else None,
            "created_at": iso(run.created_at),
        }
    )


class SessionCreateSerializer(serializers.Serializer):
    """agno's `CreateSessionRequest`; `user_id` is ignored (the session is the caller's). The one of
    `agent_id` / `team_id` / `workflow_id` that the `type` query parameter names is required here
    (every session belongs to one agent, team or workflow)."""

    session_id = serializers.UUIDField(required=False, allow_null=True)
    session_name = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    session_state = serializers.DictField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    user_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    agent_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    team_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    workflow_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class SessionCreateQuerySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["agent", "team", "workflow"], default="agent")
    db_id = serializers.CharField(required=False, allow_blank=True)


class SessionUpdateSerializer(serializers.Serializer):
    """agno's `UpdateSessionRequest`: each field given replaces the stored one. `summary` is agno's
    `SessionSummary` dict; its `summary` text is kept (topics are not stored here)."""

    session_name = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    session_state = serializers.DictField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    summary = serializers.DictField(required=False, allow_null=True)

    def validate_summary(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("summary"), str):
            raise serializers.ValidationError("A summary object needs a `summary` string.")
        return value


class SessionBulkDeleteSerializer(serializers.Serializer):
    """agno's `DeleteSessionRequest` (`session_types` must match `session_ids` in length, as in agno)."""

    session_ids = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=1000)
    session_types = serializers.ListField(child=serializers.CharField(max_length=20), min_length=1, max_length=1000)

    def validate_session_types(self, value: list[str]) -> list[str]:
        # Checked here, not with a ChoiceField: the same choices as `type` would be a second enum
        # of one set in the OpenAPI document.
        unknown = sorted({v for v in value if v not in ("agent", "team", "workflow")})
        if unknown:
            raise serializers.ValidationError(f"Unknown session types {unknown}; expected agent, team or workflow.")
        return value


class ComponentRunsQuerySerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=100)
    status = serializers.CharField(required=False, allow_blank=True)


class ComponentRunQuerySerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=100)


class PageQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, default=20)
    page = serializers.IntegerField(min_value=0, default=1)
    db_id = serializers.CharField(required=False, allow_blank=True)
    user_id = serializers.CharField(required=False, allow_blank=True)


# ---- About this OS -----------------------------------------------------------------------------

AGNO_API_VERSION = "3.1.10"  # the agno release whose API these routes follow
OS_NAME = "AgentOS for Django"


def info_json(*, agents: int, teams: int, workflows: int, agno_version: str) -> dict[str, Any]:
    """agno's `InfoResponse` for this site: no MCP server; a Bearer token for everything not public."""
    return {
        "os_id": OS_ID,
        "name": OS_NAME,
        "os_version": "1.0.0",
        "agno_version": agno_version,
        "agent_count": agents,
        "team_count": teams,
        "workflow_count": workflows,
        "mcp": {"enabled": False, "tool_run_endpoint": False},
        "auth_mode": "security_key",
    }


def optimization_json(row: Any) -> dict[str, Any]:
    """agno's `OptimizeMemoriesResponse` from a completed MemoryOptimization."""
    from agents_app.models import Agent

    slugs = dict(Agent.objects.filter(pk__in={m.get("agent_id") for m in row.result}).values_list("pk", "slug"))
    saved = max(row.tokens_before - row.tokens_after, 0)
    return {
        "memories": [
            {
                "memory_id": m.get("memory_id") or "",
                "memory": m["memory"],
                "topics": m.get("topics") or [],
                "agent_id": slugs.get(m.get("agent_id")),
                "team_id": None,
                "user_id": user_id_of(row.user_id),
                "updated_at": m.get("updated_at"),
            }
            for m in row.result
        ],
        "memories_before": row.memories_before,
        "memories_after": row.memories_after,
        "tokens_before": row.tokens_before,
        "tokens_after": row.tokens_after,
        "tokens_saved": saved,
        "reduction_percentage": round(saved / row.tokens_before * 100.0, 2) if row.tokens_before else 0.0,
    }
