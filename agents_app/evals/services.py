"""Eval suites, cases and runs: what the admin, the REST and agno edges, the command and the Celery
tasks call. Checks that name the field at fault (EvalInvalid: a 400), the start of an eval run (one
result row and one Celery task per case, published after commit), cancel, delete, and the end of an
eval run (its status, score, regression flag, telemetry event)."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

from celery import current_app
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from agents_app.embedded_worker import ensure_embedded_worker
from agents_app.eval_models import EvalCase, EvalCaseResult, EvalRun, EvalSchedule, EvalStatus, EvalSuite
from agents_app.models import ModelConfig
from agents_app.tools.registry import tool_registry
from agents_app.versions import UnknownVersion, get_version
from sessions_app.conf import agentos_settings
from sessions_app.errors import EvalInvalid, EvalRunFinished, UnknownEvalRun, UnknownEvalSuite
from sessions_app.models import Session

logger = logging.getLogger(__name__)

EVAL_CASE_TASK = "agents_app.eval_case_execute"
FINISHED = (
    EvalStatus.PASSED,
    EvalStatus.FAILED,
    EvalStatus.PARTIAL,
    EvalStatus.ERROR,
    EvalStatus.CANCELLED,
)
SCHEDULE_EVERY = {
    EvalSchedule.HOURLY: timedelta(hours=1),
    EvalSchedule.NIGHTLY: timedelta(days=1),
    EvalSchedule.WEEKLY: timedelta(days=7),
}


# ---- checks -----------------------------------------------------------------------------------------


def suite_target_check(*, agent: Any = None, team: Any = None, workflow: Any = None) -> None:
    """A suite targets exactly one agent, team or workflow, and an active one (an inactive target
    refuses runs: its suite could never pass)."""
    given = [(name, obj) for name, obj in (("agent", agent), ("team", team), ("workflow", workflow)) if obj]
    if len(given) != 1:
        raise EvalInvalid("Name exactly one target: an agent, a team or a workflow.", field="agent")
    name, obj = given[0]
    if not obj.is_active:
        raise EvalInvalid(f"The {name} {obj.slug!r} is inactive: it refuses runs.", field=name)


def suite_version_check(
    *,
    pinned_version: int | None,
    agent: Any = None,
    team: Any = None,
    workflow: Any = None,
    field: str = "pinned_version",
) -> None:
    """A pinned version must be one the target has saved (agents_app.versions): a suite pinned to
    a version that does not exist could never run."""
    if pinned_version is None:
        return
    kind, target = next(
        ((k, t) for k, t in (("agent", agent), ("team", team), ("workflow", workflow)) if t), (None, None)
    )
    try:
        if kind is None:
            raise UnknownVersion("No target.")
        get_version(kind, target.pk, pinned_version)
    except UnknownVersion:
        raise EvalInvalid(f"The target has no saved version {pinned_version}.", field=field) from None


def suite_check(
    *, agent: Any = None, team: Any = None, workflow: Any = None, pinned_version: int | None = None
) -> None:
    """A suite's target and pinned version, checked together: the one validation the admin form and
    the REST serializer both call (EvalInvalid naming the field otherwise)."""
    suite_target_check(agent=agent, team=team, workflow=workflow)
    suite_version_check(pinned_version=pinned_version, agent=agent, team=team, workflow=workflow)


def case_check(
    *,
    kind: str,
    input: str,
    expected_output: str = "",
    criteria: str = "",
    expected_tool_calls: Any = None,
    suite: EvalSuite | None = None,
    threshold: float | None = None,
    scoring: str = "",
) -> list[dict[str, Any]]:
    """Refuse a case that cannot run, naming the field; return its expected tool calls normalized
    ({"name", "arguments"?} each). A threshold no result can meet (a judged score outside 1-10, a
    p95 latency limit of 0 s or less) is refused too: such a case could never pass."""
    if not (input or "").strip():
        raise EvalInvalid("A case needs an input: the message sent to the target.", field="input")
    if threshold is not None:
        numeric = kind == EvalCase.Kind.ACCURACY or (
            kind == EvalCase.Kind.AGENT_AS_JUDGE and scoring != EvalCase.Scoring.BINARY
        )
        if numeric and not 1 <= threshold <= 10:
            raise EvalInvalid("A judged case's threshold is a score from 1 to 10.", field="threshold")
        if kind == EvalCase.Kind.PERFORMANCE and not threshold > 0:
            raise EvalInvalid("A performance case's threshold is a p95 latency in seconds, above 0.", field="threshold")
    if kind == EvalCase.Kind.ACCURACY and not (expected_output or "").strip():
        raise EvalInvalid("An accuracy case needs the expected output.", field="expected_output")
    if kind == EvalCase.Kind.AGENT_AS_JUDGE and not (criteria or "").strip():
        raise EvalInvalid("An agent-as-judge case needs criteria.", field="criteria")
    calls = tool_calls_normalized(expected_tool_calls)
    if kind == EvalCase.Kind.RELIABILITY:
        if not calls:
            raise EvalInvalid("A reliability case names the tool calls it expects.", field="expected_tool_calls")
        known = set(tool_registry.names())
        agent_tools, owner = _agent_tools(suite)
        for call in calls:
            if call["name"] not in known:
                raise EvalInvalid(f"Unknown tool {call['name']!r}.", field="expected_tool_calls")
            if agent_tools is not None and call["name"] not in agent_tools:
                raise EvalInvalid(f"{owner} has no tool {call['name']!r}.", field="expected_tool_calls")
    return calls


def _agent_tools(suite: EvalSuite | None) -> tuple[set[str] | None, str]:
    """The tools the suite's agent runs with, and who has them, for a message: a suite pinned to a
    version runs the version's tools, not the agent's current ones. (None: not an agent.)"""
    if suite is None or not suite.agent_id:
        return None, ""
    agent = suite.agent
    if suite.pinned_version is not None:
        try:
            version = get_version("agent", agent.pk, suite.pinned_version)  # type: ignore[union-attr]
        except UnknownVersion:
            pass  # refused on pinned_version by the suite's own check
        else:
            tools = set(version.snapshot.get("config", {}).get("tools") or [])
            return tools, f"Version {version.number} of the agent {agent.slug!r}"  # type: ignore[union-attr]
    return set(agent.tools), f"The agent {agent.slug!r}"  # type: ignore[union-attr]


def tool_calls_normalized(value: Any) -> list[dict[str, Any]]:
    """Expected tool calls as [{"name": str, "arguments": dict?}]; a bare name is a call with any
    arguments. Anything else: EvalInvalid on `expected_tool_calls`."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise EvalInvalid("Expected tool calls are a list.", field="expected_tool_calls")
    calls = []
    for item in value:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise EvalInvalid("Each expected tool call has a `name`.", field="expected_tool_calls")
        if set(item) - {"name", "arguments"}:
            raise EvalInvalid("An expected tool call has only `name` and `arguments`.", field="expected_tool_calls")
        arguments = item.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise EvalInvalid("A tool call's `arguments` are an object.", field="expected_tool_calls")
        calls.append({"name": item["name"], **({"arguments": arguments} if arguments is not None else {})})
    return calls


# ---- reads --------------------------------------------------------------------------------------------


def suite_get(slug_or_id: str | int) -> EvalSuite:
    qs = EvalSuite.objects.select_related("agent", "team", "workflow", "judge_model")
    suite = None
    if isinstance(slug_or_id, int) or str(slug_or_id).isdigit():
        suite = qs.filter(pk=int(slug_or_id)).first()
    if suite is None and "\x00" not in str(slug_or_id):
        suite = qs.filter(slug=str(slug_or_id)).first()
    if suite is None:
        raise UnknownEvalSuite(f"No eval suite {slug_or_id!r}.")
    return suite


def eval_run_get(eval_run_id: UUID | str, *, suite: EvalSuite | None = None) -> EvalRun:
    try:
        pk = UUID(str(eval_run_id))
    except ValueError:
        raise UnknownEvalRun(f"No eval run {eval_run_id!r}.") from None
    qs = EvalRun.objects.select_related("suite", "created_by")
    if suite is not None:
        qs = qs.filter(suite=suite)
    run = qs.filter(pk=pk).first()
    if run is None:
        raise UnknownEvalRun(f"No eval run {str(eval_run_id)!r}.")  # the id as sent, not UUID('...')
    return run


def judge_model_for(suite: EvalSuite) -> ModelConfig | None:
    """The suite's judge, else AGENTOS["EVALS_JUDGE_MODEL"] (a ModelConfig name), else the target's
    own model (a workflow has none)."""
    if suite.judge_model_id:
        return suite.judge_model
    name = agentos_settings.EVALS_JUDGE_MODEL
    if name:
        config = ModelConfig.objects.filter(name=name).first()
        if config is not None:
            return config
        logger.warning('AGENTOS["EVALS_JUDGE_MODEL"] names no model config: %r', name)
    target = suite.agent or suite.team
    return getattr(target, "model", None)


def eval_user() -> Any:
    """The user eval runs run as: staff (restricted agents admit it), no usable password."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=agentos_settings.EVALS_USER, defaults={"is_staff": True, "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def eval_session_create(suite: EvalSuite) -> Session:
    """A fresh session for one run of a case (no history from another case), marked as an eval's."""
    return Session.objects.create(
        user=eval_user(),
        name=f"eval: {suite.slug}",
        is_eval=True,
        agent_id=suite.agent_id,
        team_id=suite.team_id,
        workflow_id=suite.workflow_id,
    )


# ---- starting, cancelling, deleting --------------------------------------------------------------------


def eval_run_check(
    *,
    suite: EvalSuite,
    cases: Iterable[EvalCase] | None = None,
    model: ModelConfig | None = None,
    version: int | None = None,
) -> list[EvalCase]:
    """What `eval_run_start` refuses, without storing anything: a caller that starts several eval
    runs (the command: several suites, two versions) checks them all before running any. Returns
    the cases the eval run would run."""
    suite_target_check(agent=suite.agent, team=suite.team, workflow=suite.workflow)
    chosen = list(cases) if cases is not None else list(suite.cases.all())
    if not chosen:
        raise EvalInvalid("The suite has no case to run.", field="cases")
    if model is not None and suite.workflow_id:
        raise EvalInvalid("A workflow has no model of its own to replace.", field="model")
    # `version`: this eval run's target runs as that saved version (comparing two versions); else
    # the suite's pinned one, else the target as it is.
    suite_version_check(
        pinned_version=version, agent=suite.agent, team=suite.team, workflow=suite.workflow, field="version"
    )
    return chosen


def eval_run_start(
    *,
    suite: EvalSuite,
    user: Any = None,
    trigger: str = EvalRun.Trigger.API,
    cases: Iterable[EvalCase] | None = None,
    name: str = "",
    publish: bool = True,
    eval_input: dict[str, Any] | None = None,
    model: ModelConfig | None = None,
    version: int | None = None,
) -> EvalRun:
    """Queue an eval run of `suite` (or of `cases` of it): one result row per case, and, once
    committed, one Celery task per case (`publish=False`: the caller runs them, as the command does).
    Refuses a suite whose target is inactive, or that has no case (EvalInvalid)."""
    chosen = eval_run_check(suite=suite, cases=cases, model=model, version=version)
    judge = judge_model_for(suite)
    own = getattr(suite.agent or suite.team, "model", None)
    with transaction.atomic():
        run = EvalRun.objects.create(
            suite=suite,
            name=name,
            trigger=trigger,
            created_by=user if getattr(user, "pk", None) else None,
            cases_total=len(chosen),
            judge_model=judge.model_id if judge is not None else "",
            eval_type=chosen[0].kind if len(chosen) == 1 else "",
            eval_input=eval_input or {},
            model_override=model,
            config_version=version if version is not None else suite.pinned_version,
            target_model=(model or own).model_id if (model or own) is not None else "",
        )
        rows = EvalCaseResult.objects.bulk_create(
            EvalCaseResult(
                eval_run=run,
                case=case,
                position=i,
                name=case.name,
                kind=case.kind,
                input=case.input,
                expected=_expected_text(case),
            )
            for i, case in enumerate(chosen)
        )
        if publish:
            ids = [row.pk for row in rows] or list(run.results.values_list("pk", flat=True))
            transaction.on_commit(partial(eval_cases_publish, result_ids=ids), robust=True)
    return run


def _expected_text(case: EvalCase) -> str:
    if case.kind == EvalCase.Kind.ACCURACY:
        return case.expected_output
    if case.kind == EvalCase.Kind.AGENT_AS_JUDGE:
        return case.criteria
    if case.kind == EvalCase.Kind.RELIABILITY:
        return ", ".join(c["name"] for c in tool_calls_normalized(case.expected_tool_calls))
    return f"p95 <= {case.threshold}s" if case.threshold else ""


def eval_cases_publish(*, result_ids: list[int], countdown: float | None = None) -> int:
    """One Celery task per case result (the embedded worker starts in this process with no broker)."""
    ensure_embedded_worker(current_app)
    sent = 0
    for result_id in result_ids:
        try:
            current_app.send_task(EVAL_CASE_TASK, (result_id,), countdown=countdown)
        except Exception:
            logger.exception("Could not publish eval case %s", result_id)
            continue
        sent += 1
    return sent


def eval_run_cancel(run: EvalRun) -> EvalRun:
    """Cancel an eval run: its queued cases never run, a running case stops after its iteration."""
    now = timezone.now()
    with transaction.atomic():
        if not EvalRun.objects.filter(pk=run.pk, status__in=(EvalStatus.QUEUED, EvalStatus.RUNNING)).update(
            status=EvalStatus.CANCELLED, finished_at=now
        ):
            raise EvalRunFinished(f"The eval run {run.pk} has already ended ({run.status}).")
        EvalCaseResult.objects.filter(eval_run=run, status=EvalStatus.QUEUED).update(
            status=EvalStatus.CANCELLED, finished_at=now, reason="Cancelled before it ran."
        )
    return eval_run_progress(eval_run_id=run.pk)  # the counts (a running case updates them when it stops)


def eval_runs_delete(ids: Iterable[UUID | str]) -> int:
    """Delete eval runs (their results with them; the target's stored runs stay)."""
    pks = []
    for value in ids:
        try:
            pks.append(UUID(str(value)))
        except ValueError:
            continue
    deleted, _ = EvalRun.objects.filter(pk__in=pks).delete()
    return len(pks) if deleted else 0


# ---- the end of an eval run -----------------------------------------------------------------------------


def eval_run_progress(*, eval_run_id: UUID) -> EvalRun:
    """Count the finished cases; when all are, settle the eval run once (status, score, regression
    flag, telemetry). Idempotent: a conditional update settles it."""
    counts = EvalCaseResult.objects.filter(eval_run_id=eval_run_id).aggregate(
        done=Count("pk", filter=Q(status__in=FINISHED)),
        passed=Count("pk", filter=Q(status=EvalStatus.PASSED)),
        failed=Count("pk", filter=Q(status=EvalStatus.FAILED)),
        errors=Count("pk", filter=Q(status=EvalStatus.ERROR)),
        cancelled=Count("pk", filter=Q(status=EvalStatus.CANCELLED)),
        total=Count("pk"),
    )
    # Never lower: two cases finishing at once each count, and the count read before the other's
    # commit may be written after it (PostgreSQL's read committed).
    EvalRun.objects.filter(pk=eval_run_id).update(
        cases_done=Greatest(F("cases_done"), counts["done"]), cases_passed=Greatest(F("cases_passed"), counts["passed"])
    )
    run = EvalRun.objects.select_related("suite").get(pk=eval_run_id)
    if counts["done"] < counts["total"] or (run.finished_at is not None and run.status != EvalStatus.CANCELLED):
        return run
    if run.status == EvalStatus.CANCELLED:
        status = EvalStatus.CANCELLED
    elif counts["errors"] == counts["total"]:
        status = EvalStatus.ERROR
    elif counts["errors"] or counts["cancelled"]:
        status = EvalStatus.PARTIAL
    elif counts["failed"]:
        status = EvalStatus.FAILED
    else:
        status = EvalStatus.PASSED
    judged = counts["total"] - counts["errors"] - counts["cancelled"]
    score = round(100.0 * counts["passed"] / judged, 2) if judged else None
    previous = _baseline_score(run)
    regressed = score is not None and previous is not None and score < previous
    updated = EvalRun.objects.filter(pk=run.pk, status__in=(EvalStatus.QUEUED, EvalStatus.RUNNING)).update(
        status=status, score=score, previous_score=previous, regressed=regressed, finished_at=timezone.now()
    )
    if run.status == EvalStatus.CANCELLED:
        EvalRun.objects.filter(pk=run.pk).update(score=score, previous_score=previous)
    run.refresh_from_db()
    if updated:
        if regressed:
            logger.warning(
                "Eval suite %s regressed: score %s below its last run's %s (eval run %s)",
                run.suite.slug,
                score,
                previous,
                run.pk,
            )
        _telemetry(run)
    return run


def _baseline_score(run: EvalRun) -> float | None:
    """The score `run` is compared with for the regression flag: the suite's last finished eval run
    on the same model (override) and version that ran no case `run` did not run (a case added since
    still counts against the new score). Another case alone (agno's POST adds and runs one case
    each time) or a comparison on another model or version measures something else: it is no
    baseline, and must not hide a real drop in the next run either."""
    candidates = list(
        EvalRun.objects.filter(
            suite_id=run.suite_id,
            score__isnull=False,
            finished_at__isnull=False,
            model_override_id=run.model_override_id,
            config_version=run.config_version,
        )
        .exclude(pk=run.pk)
        .exclude(status=EvalStatus.CANCELLED)
        .order_by("-finished_at")
        .values_list("pk", "score")[:_BASELINE_CANDIDATES]
    )
    if not candidates:
        return None
    ours = set(run.results.values_list("case_id", flat=True))
    cases: dict[Any, set[Any]] = {pk: set() for pk, _score in candidates}
    for eval_run_id, case_id in EvalCaseResult.objects.filter(eval_run_id__in=list(cases)).values_list(
        "eval_run_id", "case_id"
    ):
        cases[eval_run_id].add(case_id)
    for pk, score in candidates:
        if cases[pk] and None not in cases[pk] and cases[pk] <= ours:
            return score
    return None


# How many of the suite's latest eval runs the regression flag looks through for a baseline.
_BASELINE_CANDIDATES = 50


def _telemetry(run: EvalRun) -> None:
    """The `eval` telemetry event of a finished eval run, through the same buffer and batched upload
    as run events. The event has no score field (its schema is shared with the collectors): a
    failed, partial or regressed eval run says so in `error_type`."""
    from telemetry_app.services import telemetry_record_run

    status = {EvalStatus.CANCELLED: "cancelled", EvalStatus.ERROR: "error", EvalStatus.PARTIAL: "error"}.get(
        run.status, "completed"
    )
    error_type = (
        "eval_regressed"
        if run.regressed
        else {EvalStatus.FAILED: "eval_failed", EvalStatus.PARTIAL: "eval_partial", EvalStatus.ERROR: "eval_error"}.get(
            run.status, ""
        )
    )
    tokens = {"input": 0, "output": 0, "cost": 0.0}
    for stats in run.results.values_list("stats", flat=True):
        tokens["input"] += int((stats or {}).get("input_tokens") or 0)
        tokens["output"] += int((stats or {}).get("output_tokens") or 0)
        tokens["cost"] += float((stats or {}).get("cost") or 0)
    started = run.started_at or run.created_at
    telemetry_record_run(
        event_type="eval",
        run_id=run.pk,
        session_id=None,
        component_id=run.suite.slug,
        model=run.judge_model,
        provider="",
        status=status,
        input_tokens=tokens["input"],
        output_tokens=tokens["output"],
        time_to_first_token=None,
        duration=max((run.finished_at - started).total_seconds(), 0.0) if run.finished_at else None,
        error_type=error_type,
        cost=tokens["cost"] or None,
    )


def eval_runs_compare(first: EvalRun, second: EvalRun) -> dict[str, Any]:
    """Two eval runs of a suite side by side (e.g. the same suite on two model configs): per case
    (matched by case, else by position) each side's status, score and duration, and the totals."""

    def side(run: EvalRun) -> dict[Any, EvalCaseResult]:
        return {(r.case_id or f"#{r.position}"): r for r in run.results.order_by("position")}

    def cell(result: EvalCaseResult | None) -> dict[str, Any] | None:
        if result is None:
            return None
        return {"status": result.status, "score": result.score, "passed": result.passed, "duration": result.duration}

    def total(run: EvalRun) -> dict[str, Any]:
        return {
            "eval_run_id": str(run.pk),
            "model": run.target_model,
            "version": run.config_version,
            "status": run.status,
            "score": run.score,
            "cases_passed": run.cases_passed,
            "cases_total": run.cases_total,
        }

    a, b = side(first), side(second)
    keys = list(a) + [k for k in b if k not in a]
    cases = []
    for key in keys:
        left, right = a.get(key), b.get(key)
        either = left or right
        cases.append(
            {
                "case": either.case_id if either else None,  # type: ignore[union-attr]
                "name": (either.name or either.input[:60]) if either else "",  # type: ignore[union-attr]
                "kind": either.kind if either else "",  # type: ignore[union-attr]
                "first": cell(left),
                "second": cell(right),
                "same": bool(left and right and left.passed == right.passed),
            }
        )
    return {"first": total(first), "second": total(second), "cases": cases}


def case_stats(values: list[float]) -> dict[str, float]:
    """mean/min/max/stdev of a list of numbers (stdev 0 for one value)."""
    if not values:
        return {}
    return {
        "mean": round(statistics.fmean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
    }


# ---- schedules --------------------------------------------------------------------------------------------


def eval_schedules_run(*, now: Any = None) -> int:
    """Start every scheduled suite whose last scheduled run is older than its period (beat calls
    this every few minutes; the embedded worker with its sweep). Returns how many started."""
    now = now or timezone.now()
    started = 0
    for suite in EvalSuite.objects.exclude(schedule="").select_related("agent", "team", "workflow"):
        every = SCHEDULE_EVERY.get(suite.schedule)
        if every is None:
            continue
        last = (
            EvalRun.objects.filter(suite=suite, trigger=EvalRun.Trigger.SCHEDULE)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is not None and now - last < every:
            continue
        try:
            eval_run_start(suite=suite, trigger=EvalRun.Trigger.SCHEDULE)
        except EvalInvalid as exc:
            logger.warning("Scheduled eval suite %s cannot run: %s", suite.slug, exc)
            continue
        started += 1
    return started


def eval_cases_sweep(*, now: Any = None) -> int:
    """Cases whose task was lost: queued longer than EVALS_SWEEP_AFTER_SECONDS (the message died
    with an embedded worker's process) are published again; running longer than
    EVALS_CASE_LEASE_SECONDS (the worker was killed mid-case) are queued again and published, or,
    out of attempts, end `error` (so the eval run ends, never hangs). Beat and the embedded worker's
    sweep call it with the schedules. Returns how many cases it touched."""
    now = now or timezone.now()
    live = ~Q(eval_run__status=EvalStatus.CANCELLED)
    lease = timedelta(seconds=float(agentos_settings.EVALS_CASE_LEASE_SECONDS))
    stale = list(
        EvalCaseResult.objects.filter(live, status=EvalStatus.RUNNING, started_at__lt=now - lease).values_list(
            "pk", "attempts", "eval_run_id"
        )
    )
    republish = []
    for pk, attempts, eval_run_id in stale:
        if attempts <= int(agentos_settings.EVALS_MAX_RETRIES):
            if EvalCaseResult.objects.filter(pk=pk, status=EvalStatus.RUNNING).update(status=EvalStatus.QUEUED):
                republish.append(pk)
            continue
        if EvalCaseResult.objects.filter(pk=pk, status=EvalStatus.RUNNING).update(
            status=EvalStatus.ERROR,
            error="worker_lost",
            reason="The worker running this case stopped, on every attempt.",
            finished_at=now,
        ):
            eval_run_progress(eval_run_id=eval_run_id)
    waited = timedelta(seconds=float(agentos_settings.EVALS_SWEEP_AFTER_SECONDS))
    republish += list(
        EvalCaseResult.objects.filter(
            live, status=EvalStatus.QUEUED, eval_run__created_at__lt=now - waited, eval_run__trigger__in=_PUBLISHED
        )
        .exclude(pk__in=republish)
        .values_list("pk", flat=True)[:500]
    )
    if republish:
        eval_cases_publish(result_ids=republish)
    return len({pk for pk, _, _ in stale} | set(republish))


# Eval runs whose cases go through Celery (the command runs its own in the foreground).
_PUBLISHED = [EvalRun.Trigger.API, EvalRun.Trigger.ADMIN, EvalRun.Trigger.SCHEDULE, EvalRun.Trigger.AGNO]


def attempts_left(result: EvalCaseResult) -> bool:
    return result.attempts <= int(agentos_settings.EVALS_MAX_RETRIES)


def result_requeue(result_id: int) -> None:
    EvalCaseResult.objects.filter(pk=result_id, status=EvalStatus.RUNNING).update(status=EvalStatus.QUEUED)
