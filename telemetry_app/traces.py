"""Traces, built from what the site already records of each run: no write on a run's path.

A trace is one top-level run (an agent's, a team's or a workflow's; its id is the run id's 32 hex
digits, as OpenTelemetry's trace ids are). Its spans come from the run's row and its stored events
(`Run.events`), recursively for its member and step runs (child `Run` rows):

* the run itself (AGENT, TEAM or WORKFLOW): input, output, error, tokens, cost;
* each model request (LLM) from `ModelRequestCompleted` (model, tokens, time to first token; its
  `start_time`/`duration`), or, for runs stored before those events existed, one LLM span with
  the run's own totals;
* each tool call (TOOL) from `ToolCallCompleted`/`ToolCallError` (`tool.metrics` start/end);
* each inline pre- or post-hook (HOOK) from its `...HookCompleted` event (`duration`);
* inline memory updates and session summaries (MEMORY) from their events;
* each workflow step (STEP) from `StepStarted`/`StepCompleted`.

Event times are whole seconds, so spans without their own clock are placed on the run's clock at
that precision; durations, where the event carries one, are exact. The shapes are agno's
(`TraceSummary`, `TraceDetail`, `TraceNode`, `TraceSessionStats`); `search` understands agno's
filter expressions (`EQ`, `NEQ`, `GT`, `GTE`, `LT`, `LTE`, `IN`, `CONTAINS`, `STARTSWITH`, `AND`,
`OR`, `NOT`) over the fields of `FILTER_SCHEMA`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db.models import Count, F, Max, Min, Q, QuerySet

from sessions_app.models import Run

STATUS_OF_RUN = {Run.Status.COMPLETED: "OK", Run.Status.ERROR: "ERROR"}  # others: UNSET
RUN_STATUSES_OF = {"OK": [Run.Status.COMPLETED], "ERROR": [Run.Status.ERROR]}
KIND_TYPES = {"agent": "AGENT", "team": "TEAM", "workflow": "WORKFLOW"}
MAX_SEARCH_DEPTH = 8


class InvalidFilter(ValueError):
    """A search filter this server cannot evaluate (answered 400, as agno's server does)."""


def format_duration_ms(ms: int | None) -> str:
    """agno's human duration: "150ms" under a second, "1.50s" above."""
    if ms is None or ms < 1000:
        return f"{ms or 0}ms"
    return f"{ms / 1000:.2f}s"


def trace_id_of(run_id: UUID) -> str:
    return run_id.hex


def run_id_of(trace_id: str) -> UUID | None:
    """The run a trace id names (its 32 hex digits, or the run's UUID as written), or None."""
    try:
        return UUID(hex=trace_id.strip())
    except (ValueError, AttributeError):
        return None


def _span_id(run_id: UUID, key: str) -> str:
    """A stable 16-hex-digit span id (OpenTelemetry's size), the same every time it is built."""
    return hashlib.blake2b(f"{run_id}:{key}".encode(), digest_size=8).hexdigest()


@dataclass(slots=True)
class Span:
    id: str
    parent_id: str | None
    name: str
    type: str
    start: dt.datetime
    end: dt.datetime
    status: str = "OK"
    input: str | None = None
    output: str | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    step_type: str | None = None

    @property
    def duration_ms(self) -> int:
        return max(int((self.end - self.start).total_seconds() * 1000), 0)

    def node(self, children: list[dict[str, Any]] | None) -> dict[str, Any]:
        """agno's TraceNode (None fields left out, as its server answers)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "duration": format_duration_ms(self.duration_ms),
            "start_time": _iso(self.start),
            "end_time": _iso(self.end),
            "status": self.status,
            "input": self.input,
            "output": None if self.status == "ERROR" else self.output,
            "error": self.error,
            "spans": children,
            "step_type": self.step_type,
            "metadata": self.metadata or None,
        }
        return {k: v for k, v in data.items() if v is not None}


@dataclass(slots=True)
class Trace:
    run: Run
    spans: list[Span]

    @property
    def root(self) -> Span:
        return self.spans[0]

    @property
    def trace_id(self) -> str:
        return trace_id_of(self.run.pk)

    @property
    def error_count(self) -> int:
        return sum(1 for s in self.spans if s.status == "ERROR")

    def ids(self) -> dict[str, Any]:
        run = self.run
        kind = run.component_type
        return {
            "run_id": str(run.pk),
            "session_id": str(run.session_id),
            "user_id": str(run.user_id),
            "agent_id": run.agent.slug if kind == "agent" and run.agent else None,
            "team_id": run.team.slug if kind == "team" and run.team else None,
            "workflow_id": run.workflow.slug if kind == "workflow" and run.workflow else None,
        }

    def summary(self) -> dict[str, Any]:
        """agno's TraceSummary."""
        root = self.root
        data = {
            "trace_id": self.trace_id,
            "name": root.name,
            "status": root.status,
            "duration": format_duration_ms(root.duration_ms),
            "start_time": _iso(root.start),
            "end_time": _iso(root.end),
            "total_spans": len(self.spans),
            "error_count": self.error_count,
            "input": root.input,
            **self.ids(),
            "created_at": _iso(self.run.created_at),
        }
        return {k: v for k, v in data.items() if v is not None}

    def detail(self) -> dict[str, Any]:
        """agno's TraceDetail: the summary's fields, output and error, and the span tree."""
        root = self.root
        children: dict[str | None, list[Span]] = defaultdict(list)
        for span in self.spans:
            children[span.parent_id].append(span)

        def build(span: Span) -> dict[str, Any]:
            below = sorted(children.get(span.id, []), key=lambda s: s.start)
            return span.node([build(c) for c in below] or None)

        data = {
            **self.summary(),
            "output": None if root.status == "ERROR" else root.output,
            "error": root.error,
            "tree": [build(root)],
        }
        data["tree"][0].setdefault("metadata", {})
        tokens = [s.metadata for s in self.spans if s.type == "LLM"]
        data["tree"][0]["metadata"].update(
            total_input_tokens=sum(m.get("input_tokens", 0) for m in tokens),
            total_output_tokens=sum(m.get("output_tokens", 0) for m in tokens),
        )
        return {k: v for k, v in data.items() if v is not None}

    def span(self, span_id: str) -> Span | None:
        return next((s for s in self.spans if s.id == span_id), None)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _at(seconds: Any, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """An event's time (Unix seconds, float or int) as a datetime inside [lo, hi]."""
    try:
        when = dt.datetime.fromtimestamp(float(seconds), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return lo
    return min(max(when, lo), hi)


def _text(value: Any, limit: int = 10_000) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else _json(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _run_bounds(run: Run) -> tuple[dt.datetime, dt.datetime]:
    start = run.created_at
    if run.finished_at is not None:
        end = run.finished_at
    elif run.duration:
        end = start + dt.timedelta(seconds=run.duration)
    else:
        end = run.updated_at or start
    return start, max(end, start)


def run_spans(run: Run, children_of: dict[UUID, list[Run]], parent_id: str | None = None) -> list[Span]:
    """The spans of `run` (its own first) and of its child runs, recursively."""
    kind = run.component_type
    component = run.team if kind == "team" else run.workflow if kind == "workflow" else run.agent
    name = getattr(component, "name", "") or kind
    start, end = _run_bounds(run)
    status = STATUS_OF_RUN.get(run.status, "UNSET")
    metadata: dict[str, Any] = {
        "run_id": str(run.pk),
        "session_id": str(run.session_id),
        "user_id": str(run.user_id),
        f"{kind}_id": getattr(component, "slug", ""),
        "status": run.status,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost": float(run.total_cost or run.cost or 0),
    }
    if run.model:
        metadata["model"] = run.model
    if run.error_type:
        metadata["error_type"] = run.error_type
    root = Span(
        id=_span_id(run.pk, "run"),
        parent_id=parent_id,
        name=f"{name}.run",
        type=KIND_TYPES[kind],
        start=start,
        end=end,
        status=status,
        input=_text(run.input),
        output=_text(run.output_json if run.output_json is not None else run.output),
        error=(run.error or run.error_type or "error") if status == "ERROR" else None,
        metadata=metadata,
    )
    spans = [root]
    events = [e for e in (run.events or []) if isinstance(e, dict) and not e.get("parent_run_id")]
    spans.extend(_event_spans(run, events, root))
    if not any(s.type == "LLM" for s in spans[1:]) and (run.input_tokens or run.output_tokens) and run.model:
        # A run stored before model-request events existed: one LLM span with its own totals.
        spans.append(
            Span(
                id=_span_id(run.pk, "llm"),
                parent_id=root.id,
                name=f"{run.provider or 'model'}.response",
                type="LLM",
                start=start,
                end=end,
                metadata={
                    "model": run.model,
                    "input_tokens": run.input_tokens,
                    "output_tokens": run.output_tokens,
                    "time_to_first_token": run.time_to_first_token,
                },
            )
        )
    steps = [s for s in spans if s.type == "STEP"]
    for child in children_of.get(run.pk, []):
        c_start, _ = _run_bounds(child)
        # A step run belongs under the step that was running when it started, else under the run.
        holder = next((s for s in reversed(steps) if s.start <= c_start <= s.end), root)
        spans.extend(run_spans(child, children_of, holder.id))
    return spans


def _event_spans(run: Run, events: list[dict[str, Any]], root: Span) -> Iterable[Span]:
    lo, hi = root.start, root.end
    open_hooks: dict[str, dict[str, Any]] = {}
    open_steps: dict[str, dict[str, Any]] = {}
    memory_started: dict[str, dict[str, Any]] = {}
    request_index = 0
    for position, e in enumerate(events):
        name = str(e.get("event", ""))
        bare = name.removeprefix("Team")
        key = f"{position}"
        if bare in ("PreHookStarted", "PostHookStarted"):
            open_hooks[bare[:-7] + (e.get("pre_hook_name") or e.get("post_hook_name") or "")] = e
        elif bare in ("PreHookCompleted", "PostHookCompleted"):
            phase = bare[:-9]
            hook = e.get("pre_hook_name") or e.get("post_hook_name") or ""
            started = open_hooks.pop(phase + hook, e)
            begin = _at(started.get("created_at"), lo, hi)
            duration = float(e.get("duration") or 0)
            yield Span(
                id=_span_id(run.pk, key),
                parent_id=root.id,
                name=f"{'pre' if phase.startswith('Pre') else 'post'}_hook.{hook}",
                type="HOOK",
                start=begin,
                end=begin + dt.timedelta(seconds=duration),
                metadata={"hook": hook, "transformed": bool(e.get("transformed"))},
            )
        elif bare == "ModelRequestCompleted":
            request_index += 1
            duration = float(e.get("duration") or 0)
            begin = _at(e.get("start_time") or e.get("created_at"), lo, hi)
            metadata = {
                k: e.get(k)
                for k in (
                    "model",
                    "model_provider",
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                    "cache_read_tokens",
                    "time_to_first_token",
                    "cost",
                )
                if e.get(k) is not None
            }
            yield Span(
                id=_span_id(run.pk, key),
                parent_id=root.id,
                name=f"{e.get('model_provider') or 'model'}.{e.get('model') or 'response'}",
                type="LLM",
                start=begin,
                end=begin + dt.timedelta(seconds=duration),
                status="ERROR" if e.get("error") else "OK",
                error=e.get("error") or None,
                metadata=metadata,
            )
        elif bare in ("ToolCallCompleted", "ToolCallError"):
            tool = e.get("tool") or {}
            timing = tool.get("metrics") or {}
            begin = _at(timing.get("start_time") or e.get("created_at"), lo, hi)
            finish = _at(timing.get("end_time") or e.get("created_at"), begin, hi)
            failed = bare == "ToolCallError" or bool(tool.get("tool_call_error"))
            yield Span(
                id=_span_id(run.pk, key),
                parent_id=root.id,
                name=str(tool.get("tool_name") or "tool"),
                type="TOOL",
                start=begin,
                end=finish,
                status="ERROR" if failed else "OK",
                input=_text(tool.get("tool_args")),
                output=_text(tool.get("result") if not failed else None),
                error=_text(e.get("error") or tool.get("result")) if failed else None,
                metadata={
                    "tool_name": tool.get("tool_name"),
                    "tool_call_id": tool.get("tool_call_id"),
                    "parameters": tool.get("tool_args"),
                },
            )
        elif bare in ("MemoryUpdateStarted", "SessionSummaryStarted"):
            memory_started[bare] = e
        elif bare in ("MemoryUpdateCompleted", "SessionSummaryCompleted"):
            started_name = bare.replace("Completed", "Started")
            started = memory_started.pop(started_name, e)
            begin = _at(started.get("created_at"), lo, hi)
            duration = float(e.get("duration") or 0)
            yield Span(
                id=_span_id(run.pk, key),
                parent_id=root.id,
                name="memory.update" if bare.startswith("Memory") else "session.summary",
                type="MEMORY",
                start=begin,
                end=begin + dt.timedelta(seconds=duration),
            )
        elif name == "StepStarted":
            open_steps[_json(e.get("step_index"))] = e
        elif name == "StepCompleted":
            started = open_steps.pop(_json(e.get("step_index")), e)
            begin = _at(started.get("created_at"), lo, hi)
            yield Span(
                id=_span_id(run.pk, key),
                parent_id=root.id,
                name=str(e.get("step_name") or "step"),
                type="STEP",
                start=begin,
                end=_at(e.get("created_at"), begin, hi),
                output=_text(e.get("content")),
                step_type=str(e.get("step_type") or started.get("step_type") or "") or None,
                metadata={"step_index": e.get("step_index")},
            )
    # Steps that started and never completed (the workflow failed or was cancelled there).
    for index, started in open_steps.items():
        begin = _at(started.get("created_at"), lo, hi)
        yield Span(
            id=_span_id(run.pk, f"step-{index}"),
            parent_id=root.id,
            name=str(started.get("step_name") or "step"),
            type="STEP",
            start=begin,
            end=hi,
            status="ERROR" if root.status == "ERROR" else "UNSET",
            error=root.error if root.status == "ERROR" else None,
            step_type=str(started.get("step_type") or "") or None,
        )


# ---- reading traces ------------------------------------------------------------------------------


def trace_runs(*, user: Any, session_q: Q | None = None) -> QuerySet[Run]:
    """The user's top-level runs (one trace each), newest first; `session_q`: the request's scope
    (sessions_app.access.Allowed.session_q("session__"))."""
    qs = Run.objects.filter(user=user, parent_run__isnull=True).select_related("agent", "team", "workflow")
    if session_q is not None:
        qs = qs.filter(session_q)
    return qs.order_by("-created_at", "-pk")


def build_traces(runs: list[Run]) -> list[Trace]:
    """The traces of these top-level runs: their child runs read in one query per level."""
    children_of: dict[UUID, list[Run]] = defaultdict(list)
    level = [r.pk for r in runs]
    for _ in range(MAX_SEARCH_DEPTH):
        if not level:
            break
        found = list(
            Run.objects.filter(parent_run_id__in=level)
            .select_related("agent", "team", "workflow")
            .order_by("created_at", "pk")
        )
        for child in found:
            children_of[child.parent_run_id].append(child)
        level = [c.pk for c in found]
    return [Trace(run=run, spans=run_spans(run, children_of)) for run in runs]


def filter_runs(
    qs: QuerySet[Run],
    *,
    run_id: str | None = None,
    session_id: str | None = None,
    agent_id: str | None = None,
    team_id: str | None = None,
    workflow_id: str | None = None,
    status: str | None = None,
    start_time: dt.datetime | None = None,
    end_time: dt.datetime | None = None,
) -> QuerySet[Run]:
    """agno's GET /traces filters on the runs behind the traces."""
    for value, lookup in ((run_id, "pk"), (session_id, "session_id")):
        if value:
            try:
                qs = qs.filter(**{lookup: UUID(str(value))})
            except ValueError:
                return qs.none()
    for value, lookup in ((agent_id, "agent__slug"), (team_id, "team__slug"), (workflow_id, "workflow__slug")):
        if value:
            qs = qs.filter(**{lookup: value.replace("\x00", "")})
    if status:
        wanted = status.upper()
        qs = (
            qs.filter(status__in=RUN_STATUSES_OF[wanted])
            if wanted in RUN_STATUSES_OF
            else qs.exclude(status__in=[Run.Status.COMPLETED, Run.Status.ERROR])
        )
    if start_time is not None:
        qs = qs.filter(created_at__gte=start_time)
    if end_time is not None:
        qs = qs.filter(Q(finished_at__lte=end_time) | Q(finished_at__isnull=True, created_at__lte=end_time))
    return qs


def session_stats(qs: QuerySet[Run]) -> QuerySet[Any]:
    """agno's TraceSessionStats rows (per session: traces, first and last), newest first."""
    return (
        qs.order_by()
        .values("session_id", "user_id")
        .annotate(
            total_traces=Count("pk"),
            first_trace_at=Min("created_at"),
            last_trace_at=Max("created_at"),
            agent_slug=Max("agent__slug"),
            team_slug=Max("team__slug"),
            workflow_slug=Max("workflow__slug"),
        )
        .order_by("-last_trace_at")
    )


def session_stats_json(row: dict[str, Any]) -> dict[str, Any]:
    data = {
        "session_id": str(row["session_id"]),
        "user_id": str(row["user_id"]),
        "agent_id": row["agent_slug"],
        "team_id": row["team_slug"],
        "workflow_id": row["workflow_slug"],
        "total_traces": row["total_traces"],
        "first_trace_at": _iso(row["first_trace_at"]),
        "last_trace_at": _iso(row["last_trace_at"]),
    }
    return {k: v for k, v in data.items() if v is not None}


# ---- agno's filter expressions -------------------------------------------------------------------

FILTER_FIELDS: dict[str, tuple[str, str, list[str]]] = {
    # key: (label, type, operators) — agno's TRACE_FILTER_SCHEMA keys
    "status": ("Status", "enum", ["EQ", "NEQ", "IN"]),
    "user_id": ("User ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "agent_id": ("Agent ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "team_id": ("Team ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "workflow_id": ("Workflow ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "session_id": ("Session ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "run_id": ("Run ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "name": ("Trace Name", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH"]),
    "trace_id": ("Trace ID", "string", ["EQ", "NEQ", "CONTAINS", "STARTSWITH", "IN"]),
    "duration_ms": ("Duration (ms)", "number", ["EQ", "NEQ", "GT", "GTE", "LT", "LTE"]),
    "start_time": ("Start Time", "datetime", ["GT", "GTE", "LT", "LTE"]),
    "end_time": ("End Time", "datetime", ["GT", "GTE", "LT", "LTE"]),
    "created_at": ("Created At", "datetime", ["GT", "GTE", "LT", "LTE"]),
}
LOGICAL_OPERATORS = ["AND", "OR", "NOT"]
UUID_KEYS = frozenset({"run_id", "session_id", "trace_id"})


def filter_schema() -> dict[str, Any]:
    """agno's FilterSchemaResponse."""
    fields_ = []
    for key, (label, kind, operators) in FILTER_FIELDS.items():
        item: dict[str, Any] = {"key": key, "label": label, "type": kind, "operators": operators}
        if key == "status":
            item["values"] = ["OK", "ERROR"]
        fields_.append(item)
    return {"fields": fields_, "logical_operators": LOGICAL_OPERATORS}


_LOOKUPS = {"GT": "gt", "GTE": "gte", "LT": "lt", "LTE": "lte", "CONTAINS": "icontains", "STARTSWITH": "istartswith"}


def _column(key: str) -> str:
    return {
        "agent_id": "agent__slug",
        "team_id": "team__slug",
        "workflow_id": "workflow__slug",
        "session_id": "session_id_text",
        "run_id": "run_id_text",
        "trace_id": "run_id_text",
        "user_id": "user_id_text",
        "name": "name_text",
        "duration_ms": "duration_ms",
        "start_time": "created_at",
        "end_time": "end_at",
        "created_at": "created_at",
    }[key]


def annotate_for_search(qs: QuerySet[Run]) -> QuerySet[Run]:
    """Columns the filter expressions compare, computed by the database."""
    from django.db.models import CharField, ExpressionWrapper, FloatField, Value
    from django.db.models.functions import Cast, Coalesce, Concat, Replace

    return qs.annotate(
        # UUIDs as 32 hex digits on every database (SQLite stores them so, PostgreSQL casts with dashes).
        run_id_text=Replace(Cast("id", CharField()), Value("-"), Value("")),
        session_id_text=Replace(Cast("session_id", CharField()), Value("-"), Value("")),
        user_id_text=Cast("user_id", CharField()),
        name_text=Concat(Coalesce("agent__name", "team__name", "workflow__name", Value("")), Value(".run")),
        duration_ms=ExpressionWrapper(Coalesce(F("duration"), Value(0.0)) * 1000.0, output_field=FloatField()),
        end_at=Coalesce("finished_at", "updated_at"),
    )


def _parse_time(value: Any) -> Any:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"Not a time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _value(key: str, value: Any) -> Any:
    kind = FILTER_FIELDS[key][1]
    if kind == "datetime":
        return _parse_time(value)
    if kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidFilter(f"Not a number for {key}: {value!r}") from None
    if isinstance(value, str | int | float):
        text = str(value).replace("\x00", "")
        return text.replace("-", "").lower() if key in UUID_KEYS else text
    raise InvalidFilter(f"Not a value for {key}: {value!r}")


def _status_q(op: str, value: Any) -> Q:
    values = value if op == "IN" else [value]
    if not isinstance(values, list):
        raise InvalidFilter("IN takes a list of values.")
    statuses: list[str] = []
    unset = False
    for item in values:
        wanted = str(item).upper()
        if wanted in RUN_STATUSES_OF:
            statuses += RUN_STATUSES_OF[wanted]
        else:
            unset = True
    q = Q(status__in=statuses)
    if unset:
        q |= ~Q(status__in=[Run.Status.COMPLETED, Run.Status.ERROR])
    return ~q if op == "NEQ" else q


def filter_q(expr: Any, depth: int = 0) -> Q:
    """agno's FilterExpr (a dict: {"op", "key", "value"} or {"op": AND/OR, "conditions": [...]},
    {"op": "NOT", "condition": ...}) as a Q on `annotate_for_search`'s columns."""
    if depth > MAX_SEARCH_DEPTH:
        raise InvalidFilter("The filter is nested too deeply.")
    if not isinstance(expr, dict):
        raise InvalidFilter("A filter is an object with an 'op'.")
    op = str(expr.get("op", "")).upper()
    if op in ("AND", "OR"):
        conditions = expr.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise InvalidFilter(f"{op} takes a non-empty list of 'conditions'.")
        parts = [filter_q(c, depth + 1) for c in conditions]
        q = parts[0]
        for part in parts[1:]:
            q = q & part if op == "AND" else q | part
        return q
    if op == "NOT":
        inner = expr.get("condition", expr.get("expression"))
        if inner is None and isinstance(expr.get("conditions"), list) and len(expr["conditions"]) == 1:
            inner = expr["conditions"][0]
        return ~filter_q(inner, depth + 1)
    key = expr.get("key")
    if key not in FILTER_FIELDS:
        raise InvalidFilter(f"Unknown filter key {key!r}.")
    if op not in FILTER_FIELDS[key][2]:
        raise InvalidFilter(f"Operator {op!r} is not allowed on {key!r}.")
    value = expr.get("value")
    if key == "status":
        return _status_q(op, value)
    column = _column(key)
    if op == "IN":
        if not isinstance(value, list):
            raise InvalidFilter("IN takes a list of values.")
        return Q(**{f"{column}__in": [_value(key, v) for v in value]})
    if op in ("EQ", "NEQ"):
        q = Q(**{column: _value(key, value)})
        return ~q if op == "NEQ" else q
    return Q(**{f"{column}__{_LOOKUPS[op]}": _value(key, value)})
