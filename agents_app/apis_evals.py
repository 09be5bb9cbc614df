"""`/api/evals/`: eval suites and their cases (CRUD), eval runs (start: 202, poll, cancel, delete)
and an SSE progress stream, for staff (docs/evals.md). Thin: checks and writes are in
agents_app.evals.services; cases run on Celery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_app.eval_models import CASE_FIELDS, SUITE_FIELDS, EvalCase, EvalCaseResult, EvalRun, EvalSuite
from agents_app.evals.services import (
    FINISHED,
    case_check,
    eval_run_cancel,
    eval_run_get,
    eval_run_start,
    eval_runs_compare,
    suite_check,
    suite_get,
)
from agents_app.models import Agent, ModelConfig, Team, Workflow
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.api_base import BODY_ERRORS, AsyncAPIView, StrictInputMixin, error_responses
from sessions_app.db import db_call
from sessions_app.errors import EvalRunFinished
from sessions_app.inputs import InvalidInput, clean_text

UUID_REGEX = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SUITE = OpenApiParameter("suite", OpenApiTypes.STR, OpenApiParameter.PATH, description="The suite's slug.")
EVAL_RUN_ID = OpenApiParameter("eval_run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
CASE_ID = OpenApiParameter("case_id", OpenApiTypes.INT, OpenApiParameter.PATH)
POLL_SECONDS = 0.5


# ---- serializers ---------------------------------------------------------------------------------------


def _last_scores() -> Any:
    return EvalRun.objects.filter(finished_at__isnull=False, score__isnull=False).order_by("-finished_at")


def _given_or_current(attrs: dict[str, Any], instance: Any, name: str, default: Any) -> Any:
    """A field's value for validation: the one given, or (a partial update) the stored one."""
    return attrs[name] if name in attrs else getattr(instance, name, default)


class _TargetField(serializers.SlugRelatedField):
    """A target by slug; text the database cannot hold (a NUL, a lone surrogate) is refused as a
    field error before the lookup, which PostgreSQL would answer with an error."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                clean_text(data, field=self.field_name)
            except InvalidInput as exc:
                raise serializers.ValidationError(str(exc)) from None
        return super().to_internal_value(data)


class EvalSuiteSerializer(serializers.ModelSerializer):
    agent = _TargetField(slug_field="slug", queryset=Agent.objects.all(), required=False, allow_null=True)
    team = _TargetField(slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True)
    workflow = _TargetField(slug_field="slug", queryset=Workflow.objects.all(), required=False, allow_null=True)
    judge_model = serializers.PrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(), required=False, allow_null=True, help_text="A model config id."
    )
    case_count = serializers.SerializerMethodField()
    last_score = serializers.SerializerMethodField()

    class Meta:
        model = EvalSuite
        fields = [
            "id",
            *SUITE_FIELDS,
            "case_count",
            "last_score",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_case_count(self, suite: EvalSuite) -> int:
        annotated = getattr(suite, "n_cases", None)  # the list's query annotates it (no query per suite)
        return annotated if annotated is not None else suite.cases.count()

    def get_last_score(self, suite: EvalSuite) -> float | None:
        if hasattr(suite, "last_finished_score"):
            return suite.last_finished_score
        return _last_scores().filter(suite=suite).values_list("score", flat=True).first()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """One active target (EvalInvalid on its field otherwise), and a pinned version that exists."""
        targets = {name: _given_or_current(attrs, self.instance, name, None) for name in ("agent", "team", "workflow")}
        # A partial update that touches neither the targets nor the pin leaves the pin unchecked.
        touched = any(name in attrs for name in ("pinned_version", *targets))
        pinned = _given_or_current(attrs, self.instance, "pinned_version", None) if touched else None
        suite_check(pinned_version=pinned, **targets)
        return attrs


class EvalCaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvalCase
        fields = [
            "id",
            *CASE_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """What the case needs by kind (EvalInvalid naming the field): input, expected output,
        criteria, known tools."""

        def value(name: str, default: Any = "") -> Any:
            return _given_or_current(attrs, self.instance, name, default)

        attrs["expected_tool_calls"] = case_check(
            kind=value("kind", EvalCase.Kind.ACCURACY),
            input=value("input"),
            expected_output=value("expected_output"),
            criteria=value("criteria"),
            expected_tool_calls=value("expected_tool_calls", []),
            suite=self.context["suite"],
            threshold=value("threshold", None),
            scoring=value("scoring", EvalCase.Scoring.NUMERIC),
        )
        return attrs


class EvalCaseResultSerializer(serializers.ModelSerializer):
    case = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = EvalCaseResult
        fields = [
            "id",
            "case",
            "position",
            "name",
            "kind",
            "status",
            "input",
            "expected",
            "actual",
            "score",
            "passed",
            "reason",
            "tool_calls",
            "stats",
            "run_ids",
            "duration",
            "attempts",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class EvalRunSerializer(serializers.ModelSerializer):
    suite = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField(help_text="Finished cases / all cases, 0.0 to 1.0.")
    model_override = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "suite",
            "name",
            "status",
            "trigger",
            "created_by",
            "cases_total",
            "cases_done",
            "cases_passed",
            "progress",
            "score",
            "previous_score",
            "regressed",
            "judge_model",
            "model_override",
            "target_model",
            "config_version",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run: EvalRun) -> float:
        return round(run.cases_done / run.cases_total, 4) if run.cases_total else 1.0


class EvalRunDetailSerializer(EvalRunSerializer):
    results = EvalCaseResultSerializer(many=True, read_only=True)

    class Meta(EvalRunSerializer.Meta):
        fields = [*EvalRunSerializer.Meta.fields, "results"]
        read_only_fields = fields


class EvalRunStartSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    cases = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        required=False,
        allow_empty=False,  # an empty selection is a mistake, not "all of them" (which costs)
        max_length=1000,
        help_text="Ids of the suite's cases to run (default: all of them).",
    )
    model = serializers.PrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(),
        required=False,
        allow_null=True,
        help_text="A model config id: the target (an agent or team) answers with it instead of its own, "
        "to compare two models on one suite.",
    )
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="A saved configuration version of the target to run as (default: the suite's pinned "
        "version, else the target as it is), to compare two versions on one suite.",
    )


class EvalPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _doc(summary: str, parameters: list[Any], ok: dict[int, Any], *, body: bool = False, **extra: Any) -> Any:
    """The schema of one staff route under a suite: its answer, and the errors every such route
    has (401, 403, 404; with a body, the body's too)."""
    errors = (*BODY_ERRORS, 401, 403, 404) if body else (401, 403, 404)
    return extend_schema(summary=summary, parameters=parameters, responses={**ok, **error_responses(*errors)}, **extra)


# ---- suites and cases ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List eval suites",
        responses={200: EvalSuiteSerializer, **error_responses(401, 403, 404, e404="No such page.")},
    ),
    retrieve=_doc("Get an eval suite", [SUITE], {200: EvalSuiteSerializer}),
    create=extend_schema(
        summary="Create an eval suite",
        description="Targets exactly one active agent, team or workflow (a 400 names the field otherwise).",
        responses={201: EvalSuiteSerializer, **error_responses(*BODY_ERRORS, 401, 403)},
    ),
    update=_doc("Replace an eval suite", [SUITE], {200: EvalSuiteSerializer}, body=True),
    partial_update=_doc("Change an eval suite", [SUITE], {200: EvalSuiteSerializer}, body=True),
    destroy=_doc("Delete an eval suite (its cases and eval runs)", [SUITE], {204: None}),
)
class EvalSuiteViewSet(StrictInputMixin, viewsets.ModelViewSet):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = EvalSuiteSerializer
    pagination_class = EvalPagination
    lookup_url_kwarg = "suite"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    def get_queryset(self) -> Any:
        return (
            EvalSuite.objects.select_related("agent", "team", "workflow", "judge_model")
            .annotate(
                n_cases=Count("cases", distinct=True),
                last_finished_score=Subquery(_last_scores().filter(suite=OuterRef("pk")).values("score")[:1]),
            )
            .order_by("slug")
        )

    def get_object(self) -> EvalSuite:
        self.check_permissions(self.request)
        return suite_get(self.kwargs["suite"])


class _SuiteChild:
    """Views under one suite: it is read once per request (404 `unknown_eval_suite` otherwise)."""

    kwargs: dict[str, Any]

    @property
    def suite(self) -> EvalSuite:
        cached = getattr(self, "_suite", None)
        if cached is None:
            cached = self._suite = suite_get(self.kwargs["suite"])
        return cached


@extend_schema_view(
    list=_doc("List a suite's cases", [SUITE], {200: EvalCaseSerializer}),
    retrieve=_doc("Get a case", [SUITE, CASE_ID], {200: EvalCaseSerializer}),
    create=_doc(
        "Add a case to a suite",
        [SUITE],
        {201: EvalCaseSerializer},
        body=True,
        description="A 400 names the field at fault: a case without input, an accuracy case without the expected "
        "output, a reliability case naming an unknown tool (`invalid_eval`).",
    ),
    update=_doc("Replace a case", [SUITE, CASE_ID], {200: EvalCaseSerializer}, body=True),
    partial_update=_doc("Change a case", [SUITE, CASE_ID], {200: EvalCaseSerializer}, body=True),
    destroy=_doc("Delete a case", [SUITE, CASE_ID], {204: None}),
)
class EvalCaseViewSet(_SuiteChild, StrictInputMixin, viewsets.ModelViewSet):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = EvalCaseSerializer
    pagination_class = EvalPagination
    lookup_url_kwarg = "case_id"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return EvalCase.objects.none()
        return EvalCase.objects.filter(suite=self.suite).order_by("position", "pk")

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and "suite" in self.kwargs:
            context["suite"] = self.suite
        return context

    def perform_create(self, serializer: Any) -> None:
        serializer.save(suite=self.suite)


# ---- eval runs ------------------------------------------------------------------------------------------


@extend_schema_view(
    list=_doc("List a suite's eval runs", [SUITE], {200: EvalRunSerializer}),
    retrieve=_doc(
        "Get an eval run (poll it)",
        [SUITE, EVAL_RUN_ID],
        {200: EvalRunDetailSerializer},
        description="Its status (queued, running, passed, failed, partial, error, cancelled), progress, score and "
        "each case's result.",
    ),
    create=_doc(
        "Run a suite",
        [SUITE],
        {202: EvalRunSerializer},
        body=True,
        description="Queues one Celery task per case and answers at once (202) with the eval run; poll it, or "
        "follow `.../events`. A suite whose target is inactive, or with no case, is a 400 (`invalid_eval`).",
        request=EvalRunStartSerializer,
    ),
    destroy=_doc(
        "Delete an eval run",
        [SUITE, EVAL_RUN_ID],
        {204: None},
        description="A running one is cancelled first. The target's stored runs stay.",
    ),
    cancel=extend_schema(
        summary="Cancel an eval run",
        description="Queued cases never run; a running case stops after its current iteration.",
        parameters=[SUITE, EVAL_RUN_ID],
        request=None,
        responses={
            200: EvalRunSerializer,
            **error_responses(401, 403, 404, 409, e409="The eval run has ended (`eval_run_finished`)."),
        },
    ),
)
class EvalRunViewSet(
    _SuiteChild,
    StrictInputMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = EvalRunSerializer
    pagination_class = EvalPagination
    lookup_url_kwarg = "eval_run_id"
    lookup_value_regex = UUID_REGEX

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return EvalRun.objects.none()
        return EvalRun.objects.filter(suite=self.suite).select_related("suite", "created_by").order_by("-created_at")

    def get_object(self) -> EvalRun:
        self.check_permissions(self.request)
        return eval_run_get(self.kwargs["eval_run_id"], suite=self.suite)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        return Response(EvalRunDetailSerializer(run).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = EvalRunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suite = self.suite
        cases = None
        wanted = serializer.validated_data.get("cases")
        if wanted:
            cases = list(suite.cases.filter(pk__in=wanted))
            unknown = sorted(set(wanted) - {c.pk for c in cases})
            if unknown:
                raise serializers.ValidationError({"cases": [f"No case {pk} in this suite." for pk in unknown]})
        run = eval_run_start(
            suite=suite,
            user=request.user,
            cases=cases,
            name=serializer.validated_data["name"],
            trigger="api",
            model=serializer.validated_data.get("model"),
            version=serializer.validated_data.get("version"),
        )
        return Response(EvalRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    def perform_destroy(self, instance: EvalRun) -> None:
        if not instance.finished:
            with contextlib.suppress(EvalRunFinished):  # it ended meanwhile
                eval_run_cancel(instance)
        instance.delete()

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(EvalRunSerializer(eval_run_cancel(self.get_object())).data)


class EvalCompareSideSerializer(serializers.Serializer):
    eval_run_id = serializers.UUIDField()
    model = serializers.CharField()
    version = serializers.IntegerField(allow_null=True, help_text="The configuration version it ran as, if any.")
    status = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    cases_passed = serializers.IntegerField()
    cases_total = serializers.IntegerField()


class EvalCompareCellSerializer(serializers.Serializer):
    status = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    duration = serializers.FloatField(allow_null=True)


class EvalCompareCaseSerializer(serializers.Serializer):
    case = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_blank=True)
    kind = serializers.CharField(allow_blank=True)
    first = EvalCompareCellSerializer(allow_null=True)
    second = EvalCompareCellSerializer(allow_null=True)
    same = serializers.BooleanField(help_text="Both sides passed, or both did not.")


class EvalCompareSerializer(serializers.Serializer):
    first = EvalCompareSideSerializer()
    second = EvalCompareSideSerializer()
    cases = EvalCompareCaseSerializer(many=True)


class EvalCompareQuerySerializer(serializers.Serializer):
    first = serializers.UUIDField(help_text="An eval run of the suite.")
    second = serializers.UUIDField(help_text="Another eval run of the suite.")


class EvalCompareApi(_SuiteChild, StrictInputMixin, APIView):
    """Two eval runs of a suite side by side (e.g. on two model configs: start each with `model`)."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        summary="Compare two eval runs of a suite",
        description="Per case (each side's status, score, duration; whether both agree) and in total (each "
        "side's model, status and score). Start the two with `POST .../runs` and `model` (or `version`) to compare models (or versions).",
        parameters=[SUITE, EvalCompareQuerySerializer],
        responses={200: EvalCompareSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, suite: str) -> Response:
        query = EvalCompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        first = eval_run_get(query.validated_data["first"], suite=self.suite)
        second = eval_run_get(query.validated_data["second"], suite=self.suite)
        return Response(eval_runs_compare(first, second))


class EvalProgressEventSerializer(serializers.Serializer):
    event = serializers.CharField(help_text="EvalRunProgress, EvalCaseCompleted, then EvalRunCompleted.")
    data = serializers.CharField(help_text="JSON: the eval run's status, progress and score; or a case's result.")


class EvalRunEventsApi(AsyncAPIView):
    """An eval run's progress as Server-Sent Events, until it ends."""

    permission_classes = [permissions.IsAdminUser]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def prepare_get(self, request: Any, suite: str, eval_run_id: UUID) -> EvalRun:
        return eval_run_get(eval_run_id, suite=suite_get(suite))

    @extend_schema(
        summary="Follow an eval run's progress",
        description="`EvalRunProgress` whenever a case finishes (status, cases_done, cases_total, score), "
        "`EvalCaseCompleted` with each case's result, and `EvalRunCompleted` when the eval run ends (then the "
        "stream ends). Works for a finished eval run too (its cases, then the end).",
        parameters=[SUITE, EVAL_RUN_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(EvalProgressEventSerializer),
            **error_responses(401, 403, 404),
        },
    )
    async def get(self, request: Any, suite: str, eval_run_id: UUID) -> Any:
        return sse_response(eval_run_progress_events(self.prepared.pk))


async def eval_run_progress_events(eval_run_id: UUID, *, poll: float = POLL_SECONDS) -> AsyncIterator[dict[str, Any]]:
    """The progress of an eval run from the database (any process runs its cases), polled."""
    seen: set[int] = set()
    last: tuple[Any, ...] | None = None
    while True:
        run, results = await db_call(_progress_read, eval_run_id, seen)
        if run is None:
            return
        for result in results:
            seen.add(result["id"])
            yield {"event": "EvalCaseCompleted", "eval_run_id": str(eval_run_id), **result}
        data = EvalRunSerializer(run).data
        state = (run.status, run.cases_done, run.score)
        if state != last:
            last = state
            yield {"event": "EvalRunProgress", **data}
        if run.status in FINISHED and (run.finished_at is not None or run.status == "cancelled"):
            yield {"event": "EvalRunCompleted", **data, "at": timezone.now().isoformat()}
            return
        await asyncio.sleep(poll)


def _progress_read(eval_run_id: UUID, seen: set[int]) -> tuple[EvalRun | None, list[dict[str, Any]]]:
    run = EvalRun.objects.select_related("suite", "created_by").filter(pk=eval_run_id).first()
    if run is None:
        return None, []
    rows = (
        EvalCaseResult.objects.filter(eval_run_id=eval_run_id, status__in=FINISHED)
        .exclude(pk__in=seen)
        .order_by("position")
    )
    return run, [dict(EvalCaseResultSerializer(row).data) for row in rows]
