"""agno AgentOS's `/eval-runs` routes over our evals (docs/evals.md#agnos-api), so agno 3.1.10's
`AgentOSClient.run_eval`, `list_eval_runs`, `get_eval_run`, `update_eval_run` and `delete_eval_runs`
work. Staff only, as `/api/evals/`.

`POST /eval-runs` runs one case the way agno's client sends it (`EvalRunInput`): the case is kept in
a suite per target (`agno-<kind>-<id>`, created on first use, so it can be run again from the admin
or the command), queued on Celery like any case, and the answer waits for it up to
EVALS_AGNO_WAIT_SECONDS (agno's server answers when the eval is done); after that it answers with the
eval run as it stands (`eval_data.status`), which `GET /eval-runs/{id}` polls. agno's `model_id` /
`model_provider` (run with another model) are recorded in `eval_input`, not applied."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from agents_app.agno_compat import schema as doc
from agents_app.agno_compat.serializers import DB_ID, iso, page_json
from agents_app.agno_compat.views import MAX_PAGE_SIZE, AgnoView, PreparedGet
from agents_app.eval_models import EvalCase, EvalCaseResult, EvalRun, EvalSuite
from agents_app.evals.services import FINISHED, case_check, eval_run_start, eval_runs_delete, suite_target_check
from agents_app.models import Agent, Team
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.errors import EvalInvalid

EVAL_TYPES = [k.value for k in EvalCase.Kind]
SORT_FIELDS = {"created_at": "created_at", "updated_at": "updated_at", "name": "name"}


# ---- bodies and queries (agno's names) -------------------------------------------------------------------


class EvalRunListQuerySerializer(serializers.Serializer):
    agent_id = serializers.CharField(required=False, allow_blank=True)
    team_id = serializers.CharField(required=False, allow_blank=True)
    workflow_id = serializers.CharField(required=False, allow_blank=True)
    model_id = serializers.CharField(required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=["agent", "team", "workflow"], required=False)
    eval_types = serializers.CharField(required=False, allow_blank=True, help_text="Comma-separated eval types.")
    limit = serializers.IntegerField(min_value=1, default=20)
    page = serializers.IntegerField(min_value=0, default=1)
    sort_by = serializers.CharField(required=False, default="created_at")
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    db_id = serializers.CharField(required=False, allow_blank=True)
    table = serializers.CharField(required=False, allow_blank=True)


class EvalRunInputSerializer(serializers.Serializer):
    agent_id = serializers.CharField(required=False, allow_null=True, max_length=100)
    team_id = serializers.CharField(required=False, allow_null=True, max_length=100)
    model_id = serializers.CharField(required=False, allow_null=True, max_length=200)
    model_provider = serializers.CharField(required=False, allow_null=True, max_length=100)
    eval_type = serializers.ChoiceField(choices=EVAL_TYPES)
    input = serializers.CharField(max_length=32_000)
    additional_guidelines = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    additional_context = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    num_iterations = serializers.IntegerField(min_value=1, max_value=50, default=1)
    name = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200)
    expected_output = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    criteria = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    scoring_strategy = serializers.ChoiceField(choices=["numeric", "binary"], required=False, default="binary")
    threshold = serializers.IntegerField(min_value=1, max_value=10, required=False, default=7)
    warmup_runs = serializers.IntegerField(min_value=0, max_value=10, default=0)
    expected_tool_calls = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, allow_null=True, max_length=100
    )
    allow_additional_tool_calls = serializers.BooleanField(default=False)
    expected_tool_call_arguments = serializers.DictField(required=False, allow_null=True)


class DeleteEvalRunsSerializer(serializers.Serializer):
    eval_run_ids = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=1000)


class UpdateEvalRunSerializer(serializers.Serializer):
    name = serializers.CharField(min_length=1, max_length=200)


class EvalSchemaSerializer(serializers.Serializer):
    """agno's `EvalSchema` (documentation only)."""

    id = serializers.CharField()
    agent_id = serializers.CharField(required=False)
    team_id = serializers.CharField(required=False)
    workflow_id = serializers.CharField(required=False)
    model_id = serializers.CharField(required=False)
    model_provider = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    evaluated_component_name = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False)
    eval_type = serializers.ChoiceField(choices=EVAL_TYPES)
    eval_data = serializers.DictField(help_text="status, score, passed, reason, and the type's figures.")
    eval_input = serializers.DictField(required=False)
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)


class EvalSchemaPageSerializer(serializers.Serializer):
    data = EvalSchemaSerializer(many=True)
    meta = serializers.DictField()


# ---- agno's shapes ------------------------------------------------------------------------------------


def eval_json(run: EvalRun) -> dict[str, Any]:
    """An eval run as agno's `EvalSchema` (nulls left out, as agno's server does)."""
    suite = run.suite
    target = suite.target
    results = list(run.results.all())
    kind = run.eval_type or (results[0].kind if results else EvalCase.Kind.ACCURACY)
    model = getattr(target, "model", None)
    data: dict[str, Any] = {
        "id": str(run.pk),
        "agent_id": suite.agent.slug if suite.agent_id else None,
        "team_id": suite.team.slug if suite.team_id else None,
        "workflow_id": suite.workflow.slug if suite.workflow_id else None,
        "model_id": getattr(model, "model_id", None),
        "model_provider": getattr(model, "provider", None),
        "name": run.name or None,
        "evaluated_component_name": getattr(target, "name", None),
        "user_id": run.created_by.get_username() if run.created_by_id else None,
        "eval_type": kind,
        "eval_data": _eval_data(run, results),
        "eval_input": run.eval_input or None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
    }
    return {k: v for k, v in data.items() if v is not None}


def _eval_data(run: EvalRun, results: list[EvalCaseResult]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": run.status,
        "score": run.score,
        "cases_total": run.cases_total,
        "cases_done": run.cases_done,
        "results": [
            {
                "input": r.input,
                "expected": r.expected,
                "output": r.actual,
                "status": r.status,
                "score": r.score,
                "passed": r.passed,
                "reason": r.reason,
                "tool_calls": r.tool_calls,
                "duration": r.duration,
            }
            for r in results
        ],
    }
    if len(results) != 1:
        return data
    result = results[0]
    stats = result.stats or {}
    scores = stats.get("scores") or {}
    data.update(passed=result.passed, reason=result.reason)
    if result.kind in (EvalCase.Kind.ACCURACY, EvalCase.Kind.AGENT_AS_JUDGE):
        data.update(
            avg_score=scores.get("mean"),
            mean_score=scores.get("mean"),
            min_score=scores.get("min"),
            max_score=scores.get("max"),
            std_dev_score=scores.get("stdev"),
        )
    elif result.kind == EvalCase.Kind.RELIABILITY:
        last = (stats.get("iterations") or [{}])[-1]
        data.update(
            eval_status="PASSED" if result.passed else "FAILED",
            missing_tool_calls=last.get("missing", []),
            failed_tool_calls=last.get("unexpected", []),
            passed_tool_calls=[c["name"] for c in result.tool_calls if c["name"] not in last.get("unexpected", [])],
        )
    elif result.kind == EvalCase.Kind.PERFORMANCE:
        latency = stats.get("latency") or {}
        memory = stats.get("memory_mb") or {}
        data.update(
            run_times=[i.get("seconds") for i in stats.get("iterations", [])],
            avg_run_time=latency.get("mean"),
            min_run_time=latency.get("min"),
            max_run_time=latency.get("max"),
            std_dev_run_time=latency.get("stdev"),
            median_run_time=latency.get("p50"),
            p95_run_time=latency.get("p95"),
            avg_memory_usage=memory.get("mean"),
            max_memory_usage=memory.get("max"),
            time_to_first_token=(stats.get("ttft") or {}).get("mean"),
            input_tokens=stats.get("input_tokens"),
            output_tokens=stats.get("output_tokens"),
            cost=stats.get("cost"),
        )
    return data


def _check_db(q: dict[str, Any]) -> None:
    if q.get("db_id") and q["db_id"] != DB_ID:
        raise NotFound(f"Database with id '{q['db_id']}' not found")


def _eval_run_or_404(eval_run_id: str) -> EvalRun:
    try:
        pk = UUID(str(eval_run_id))
    except ValueError:
        raise NotFound(f"Eval run with id '{eval_run_id}' not found") from None
    run = EvalRun.objects.select_related("suite__agent", "suite__team", "suite__workflow", "created_by").filter(pk=pk)
    found = run.first()
    if found is None:
        raise NotFound(f"Eval run with id '{eval_run_id}' not found")
    return found


# ---- starting one case ---------------------------------------------------------------------------------


def _agno_suite(kind_name: str, target: Any) -> EvalSuite:
    """The suite agno's cases of `target` are kept in: `agno-<kind>-<id>`, or, when that slug is
    taken by a suite of another target (an operator's, or a long id cut to the same 100
    characters), `agno-<kind>-<id>-<pk>`. Always a suite of `target`: a case must never run
    against another agent than the one agno named."""
    base = f"agno-{kind_name}-{target.slug}"[:100]
    fallback = f"{base[: 99 - len(str(target.pk))]}-{target.pk}"
    own = EvalSuite.objects.filter(slug__in=[base, fallback], **{kind_name: target}).order_by("pk").first()
    if own is not None:
        return own
    slug = fallback if EvalSuite.objects.filter(slug=base).exists() else base
    suite, _ = EvalSuite.objects.get_or_create(
        slug=slug, defaults={"name": f"agno evals of {target.name}"[:200], kind_name: target}
    )
    if getattr(suite, f"{kind_name}_id") != target.pk:
        raise EvalInvalid(f"The eval suite {slug!r} belongs to another {kind_name}.", field=f"{kind_name}_id")
    return suite


def agno_case_start(*, user: Any, body: dict[str, Any]) -> EvalRun:
    """Create the case agno's client describes (in the target's `agno-...` suite) and queue it."""
    agent_id, team_id = body.get("agent_id"), body.get("team_id")
    if bool(agent_id) == bool(team_id):
        raise EvalInvalid("Name an agent_id or a team_id (one of them).", field="agent_id")
    kind_name, slug = ("agent", agent_id) if agent_id else ("team", team_id)
    model = Agent if agent_id else Team
    target = model.objects.filter(slug=slug).first() if "\x00" not in slug else None
    if target is None:
        raise NotFound(f"{kind_name.title()} not found")
    suite_target_check(**{kind_name: target})
    suite = _agno_suite(kind_name, target)
    kind = body["eval_type"]
    calls: list[Any] = list(body.get("expected_tool_calls") or [])
    arguments = body.get("expected_tool_call_arguments") or {}
    if arguments:
        calls = [c for c in calls if c not in arguments]
        for name, given in arguments.items():
            for args in given if isinstance(given, list) else [given]:
                if not isinstance(args, dict):
                    raise EvalInvalid("Tool call arguments are objects.", field="expected_tool_call_arguments")
                calls.append({"name": name, "arguments": args})
    criteria = body.get("criteria") or ""
    guidelines = body.get("additional_guidelines") or ""
    if guidelines:
        criteria = f"{criteria}\n{guidelines}".strip()
    fields = {
        "kind": kind,
        "input": body["input"],
        "expected_output": body.get("expected_output") or "",
        "criteria": criteria,
    }
    normalized = case_check(**fields, expected_tool_calls=calls, suite=suite)
    case = EvalCase.objects.create(
        suite=suite,
        position=suite.cases.count(),
        name=(body.get("name") or "")[:200],
        scoring=EvalCase.Scoring.NUMERIC if body.get("scoring_strategy") == "numeric" else EvalCase.Scoring.BINARY,
        threshold=float(body["threshold"])
        if kind == "agent_as_judge" and body.get("scoring_strategy") == "numeric"
        else None,
        expected_tool_calls=normalized,
        allow_additional_tool_calls=bool(body.get("allow_additional_tool_calls")),
        iterations=body.get("num_iterations") or 1,
        warmup=body.get("warmup_runs") or 0,
        **fields,
    )
    recorded = {k: v for k, v in body.items() if v not in (None, "", [], {})}
    return eval_run_start(
        suite=suite,
        user=user,
        trigger=EvalRun.Trigger.AGNO,
        cases=[case],
        name=body.get("name") or "",
        eval_input=recorded,
    )


# ---- views ---------------------------------------------------------------------------------------------


class _EvalAgnoView(AgnoView):
    permission_classes = [permissions.IsAdminUser]


@doc.documented(
    get=extend_schema(
        summary="List eval runs",
        operation_id="eval_runs_list",
        parameters=[EvalRunListQuerySerializer],
        responses={200: EvalSchemaPageSerializer, **doc.agno_errors(401, 403, 404, 422, e404="An unknown `db_id`.")},
    ),
    post=extend_schema(
        summary="Run one eval case",
        description="Queued on Celery; the answer waits for the result up to EVALS_AGNO_WAIT_SECONDS.",
        request=EvalRunInputSerializer,
        responses={
            200: EvalSchemaSerializer,
            **doc.agno_errors(*doc.BODY_ERRORS, 401, 403, 404, e404="No such agent or team."),
        },
    ),
    delete=extend_schema(
        summary="Delete eval runs",
        operation_id="eval_runs_bulk_destroy",
        request=DeleteEvalRunsSerializer,
        responses={
            204: OpenApiResponse(description="Deleted (unknown ids are skipped)."),
            **doc.agno_errors(*doc.BODY_ERRORS, 401, 403),
        },
    ),
)
class EvalRunListView(_EvalAgnoView):
    """`GET /eval-runs` (agno's page, with its filters), `POST /eval-runs` (run one case),
    `DELETE /eval-runs` (`{"eval_run_ids": [...]}`)."""

    def prepare_get(self, request: Any) -> dict[str, Any]:
        q = self.query(EvalRunListQuerySerializer)
        _check_db(q)
        limit, page = min(q["limit"], MAX_PAGE_SIZE), max(q["page"], 1)
        runs = EvalRun.objects.select_related("suite__agent", "suite__team", "suite__workflow", "created_by")
        for name in ("agent", "team", "workflow"):
            value = q.get(f"{name}_id")
            if value:
                runs = runs.filter(**{f"suite__{name}__slug": value.replace("\x00", "")})
        if q.get("type"):
            runs = runs.filter(**{f"suite__{q['type']}__isnull": False})
        if q.get("model_id"):
            model_id = q["model_id"].replace("\x00", "")
            runs = runs.filter(suite__agent__model__model_id=model_id) | runs.filter(
                suite__team__model__model_id=model_id
            )
        types = [t.strip() for t in (q.get("eval_types") or "").split(",") if t.strip()]
        if types:
            runs = runs.filter(results__kind__in=types).distinct()
        field = SORT_FIELDS.get(q["sort_by"], "created_at")
        runs = runs.order_by(f"-{field}" if q["sort_order"] == "desc" else field)
        total = runs.count()
        offset = (page - 1) * limit
        rows = list(runs[offset : offset + limit]) if offset < total else []
        return page_json([eval_json(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, request: Any) -> Any:
        return Response(self.prepared)

    def prepare_post(self, request: Any) -> UUID:
        _check_db({"db_id": request.query_params.get("db_id")})
        body = EvalRunInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return agno_case_start(user=request.user, body=body.validated_data).pk

    async def post(self, request: Any) -> Any:
        deadline = time.monotonic() + float(agentos_settings.EVALS_AGNO_WAIT_SECONDS)
        while True:
            run = await db_call(_eval_run_or_404, str(self.prepared))
            if run.status in FINISHED or time.monotonic() >= deadline:
                return Response(await db_call(eval_json, run))
            await asyncio.sleep(0.2)

    def prepare_delete(self, request: Any) -> None:
        _check_db({"db_id": request.query_params.get("db_id")})
        body = DeleteEvalRunsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        eval_runs_delete(body.validated_data["eval_run_ids"])

    async def delete(self, request: Any) -> Any:
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)


EVAL_404 = "No such eval run, or an unknown `db_id`."


@doc.documented(
    get=extend_schema(
        summary="Get an eval run",
        responses={200: EvalSchemaSerializer, **doc.agno_errors(401, 403, 404, e404=EVAL_404)},
    ),
    patch=extend_schema(
        summary="Rename an eval run",
        request=UpdateEvalRunSerializer,
        responses={200: EvalSchemaSerializer, **doc.agno_errors(*doc.BODY_ERRORS, 401, 403, 404, e404=EVAL_404)},
    ),
)
class EvalRunDetailView(PreparedGet, _EvalAgnoView):
    """`GET /eval-runs/{id}` and `PATCH /eval-runs/{id}` (`{"name": ...}`)."""

    def prepare_get(self, request: Any, eval_run_id: str) -> dict[str, Any]:
        _check_db({"db_id": request.query_params.get("db_id")})
        return eval_json(_eval_run_or_404(eval_run_id))

    def prepare_patch(self, request: Any, eval_run_id: str) -> dict[str, Any]:
        _check_db({"db_id": request.query_params.get("db_id")})
        body = UpdateEvalRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = _eval_run_or_404(eval_run_id)
        run.name = body.validated_data["name"]
        run.save(update_fields=["name", "updated_at"])
        return eval_json(run)

    async def patch(self, request: Any, eval_run_id: str) -> Any:
        return Response(self.prepared)
