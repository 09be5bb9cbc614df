"""One eval case, start to end: the target's runs through the normal run pipeline (agents_app.runs,
each in a fresh session marked as an eval's), the judge's verdicts through the model layer's
structured output (agents_app.hooks.structured.ask_json, as the model-judged hooks do), and the
case's score, stats and status.

Called by the Celery task (one task per case) and by `manage.py agentos_eval` in the foreground.
A judge model that fails is retried (by the task) when the failure is retryable, then the case
ends `error` with the reason; the other cases go on and the eval run ends `partial`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from django.db.models import F
from django.utils import timezone

from agents_app.eval_models import EvalCase, EvalCaseResult, EvalRun, EvalStatus, EvalSuite
from agents_app.evals.services import (
    attempts_left,
    case_stats,
    eval_run_progress,
    eval_session_create,
    judge_model_for,
    result_requeue,
    tool_calls_normalized,
)
from agents_app.hooks.structured import ask_json, object_schema
from agents_app.providers.base import (
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from agents_app.runs import arun_events, launch, prepare
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.models import Run

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 7.0
JUDGED = (EvalCase.Kind.ACCURACY, EvalCase.Kind.AGENT_AS_JUDGE)
_RETRYABLE = (ModelTimeoutError, ModelRateLimitError, ModelConnectionError)

JUDGE_SYSTEM = (
    "You are an impartial evaluator of an AI system's answers. Judge only what you are shown, "
    "follow the scale you are given, and explain your verdict in one or two sentences."
)
_SCORE = {"type": "integer", "minimum": 1, "maximum": 10, "description": "1 = wrong or useless, 10 = fully right."}
_REASON = {"type": "string", "description": "Why, in one or two sentences."}
SCORE_SCHEMA = object_schema({"score": _SCORE, "reason": _REASON})
VERDICT_SCHEMA = object_schema(
    {"passed": {"type": "boolean", "description": "Whether the answer meets every criterion."}, "reason": _REASON}
)


@dataclass(slots=True)
class Delivery:
    """What one delivery of a case's task did: the case's status, and whether to deliver again."""

    status: str
    retry_in: float | None = None


@dataclass(slots=True)
class TargetRun:
    """One run of the target, as an eval reads it."""

    run_id: str
    status: str
    content: str
    error: str
    error_type: str
    tool_calls: list[dict[str, Any]]
    seconds: float
    ttft: float | None
    input_tokens: int
    output_tokens: int
    cost: float
    memory_mb: float


@dataclass(slots=True)
class Outcome:
    """What a case found, filled as it goes (so a judge failure keeps the answers already seen)."""

    status: str = EvalStatus.FAILED
    actual: str = ""
    score: float | None = None
    passed: bool | None = None
    reason: str = ""
    error: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def eval_case_execute(*, result_id: int) -> Delivery:
    """Run one case result (claimed with a conditional update, so a redelivered task does nothing),
    store what it found, and settle its eval run when it was the last."""
    now = timezone.now()
    claimed = (
        EvalCaseResult.objects.filter(pk=result_id, status=EvalStatus.QUEUED)
        .exclude(eval_run__status=EvalStatus.CANCELLED)
        .update(status=EvalStatus.RUNNING, started_at=now, attempts=F("attempts") + 1)
    )
    if not claimed:
        status = EvalCaseResult.objects.filter(pk=result_id).values_list("status", flat=True).first()
        return Delivery(status or "missing")
    result = EvalCaseResult.objects.select_related(
        "case",
        "eval_run__suite__agent",
        "eval_run__suite__team",
        "eval_run__suite__workflow",
        "eval_run__suite__judge_model",
        "eval_run__model_override",
    ).get(pk=result_id)
    EvalRun.objects.filter(pk=result.eval_run_id, status=EvalStatus.QUEUED).update(
        status=EvalStatus.RUNNING, started_at=now
    )
    outcome = Outcome()
    started = time.perf_counter()
    try:
        async_to_sync(_execute)(result, outcome)
    except ModelError as exc:
        retryable = isinstance(exc, _RETRYABLE) or (exc.status_code or 0) >= 500
        if retryable and attempts_left(result):
            result_requeue(result_id)
            delay = float(agentos_settings.EVALS_RETRY_SECONDS) * 2 ** (result.attempts - 1)
            logger.info("Eval case %s: the judge failed (%s), retrying in %.1fs", result_id, exc.error_type, delay)
            return Delivery(EvalStatus.QUEUED, retry_in=delay)
        outcome.status = EvalStatus.ERROR
        outcome.error = exc.error_type
        outcome.reason = f"The judge model failed ({exc.error_type}): {exc}"
    except Exception as exc:  # a bug must not leave the case running
        logger.exception("Eval case %s failed", result_id)
        outcome.status = EvalStatus.ERROR
        outcome.error = "internal_error"
        outcome.reason = f"The eval failed: {type(exc).__name__}: {exc}"
    stored = EvalCaseResult.objects.filter(pk=result_id, status=EvalStatus.RUNNING).update(
        status=outcome.status,
        actual=outcome.actual,
        score=outcome.score,
        passed=outcome.passed,
        reason=outcome.reason,
        error=outcome.error,
        tool_calls=outcome.tool_calls,
        run_ids=outcome.run_ids,
        stats=outcome.stats,
        duration=round(time.perf_counter() - started, 4),
        finished_at=timezone.now(),
    )
    if not stored:
        # The eval run was deleted meanwhile (or the sweep took the case over): nothing to settle.
        return Delivery(outcome.status)
    eval_run_progress(eval_run_id=result.eval_run_id)
    return Delivery(outcome.status)


def eval_run_execute_here(eval_run: EvalRun, *, on_case: Any = None) -> EvalRun:
    """Run every queued case of `eval_run` in this thread, one after the other (the command's
    foreground mode); `on_case(result)` after each."""
    for result_id in list(eval_run.results.order_by("position").values_list("pk", flat=True)):
        delivery = eval_case_execute(result_id=result_id)
        while delivery.retry_in is not None:
            time.sleep(delivery.retry_in)
            delivery = eval_case_execute(result_id=result_id)
        if on_case is not None:
            on_case(EvalCaseResult.objects.get(pk=result_id))
    eval_run.refresh_from_db()
    return eval_run


# ---- one case -------------------------------------------------------------------------------------------


async def _execute(result: EvalCaseResult, out: Outcome) -> None:
    suite = result.eval_run.suite
    case = result.case
    kind = result.kind
    iterations = case.iterations if case is not None else 1
    threshold = case.threshold if case is not None else None
    judge = None
    if kind in JUDGED:
        judge = await db_call(judge_model_for, suite)
        if judge is None:
            out.status, out.error = EvalStatus.ERROR, "no_judge_model"
            out.reason = 'No judge model: set one on the suite or AGENTOS["EVALS_JUDGE_MODEL"].'
            return
    if kind == EvalCase.Kind.PERFORMANCE and case is not None:
        for _ in range(case.warmup):
            if await db_call(_cancelled, result.eval_run_id):
                break  # the first iteration's check below says so
            warm = await _target_run(
                suite, result.input, result.eval_run.model_override, result.eval_run.config_version
            )
            out.run_ids.append(warm.run_id)
    per_iteration: list[dict[str, Any]] = []
    runs: list[TargetRun] = []
    for i in range(iterations):
        if await db_call(_cancelled, result.eval_run_id):
            out.status, out.reason = EvalStatus.CANCELLED, f"Cancelled after {i} of {iterations} iterations."
            break
        run = await _target_run(suite, result.input, result.eval_run.model_override, result.eval_run.config_version)
        runs.append(run)
        out.run_ids.append(run.run_id)
        out.actual, out.tool_calls = run.content, run.tool_calls
        item: dict[str, Any] = {"run_id": run.run_id, "status": run.status, "seconds": round(run.seconds, 4)}
        per_iteration.append(item)
        if run.status != "completed":
            item["reason"] = f"The run ended {run.status}" + (f" ({run.error_type}): {run.error}" if run.error else ".")
            continue
        if kind == EvalCase.Kind.ACCURACY:
            verdict = await _judge(judge, SCORE_SCHEMA, "eval_accuracy", _accuracy_prompt(result, run.content))
            item.update(score=verdict["score"], reason=verdict["reason"])
        elif kind == EvalCase.Kind.AGENT_AS_JUDGE:
            numeric = case is None or case.scoring == EvalCase.Scoring.NUMERIC
            schema = SCORE_SCHEMA if numeric else VERDICT_SCHEMA
            verdict = await _judge(
                judge,
                schema,
                f"eval_judge_{'numeric' if numeric else 'binary'}",
                _criteria_prompt(result, run.content, numeric),
            )
            item["reason"] = verdict["reason"]
            item["score"] = verdict["score"] if numeric else (1 if verdict["passed"] else 0)
        elif kind == EvalCase.Kind.RELIABILITY:
            expected = tool_calls_normalized(case.expected_tool_calls if case is not None else [])
            extra_ok = case is not None and case.allow_additional_tool_calls
            item.update(_compare_tool_calls(expected, run.tool_calls, allow_additional=extra_ok))
            item["score"] = 1 if item["passed"] else 0
    if out.status == EvalStatus.CANCELLED:
        out.stats = {"iterations": per_iteration}
        return
    _conclude(out, kind, case, threshold, per_iteration, runs)


def _conclude(
    out: Outcome,
    kind: str,
    case: EvalCase | None,
    threshold: float | None,
    per_iteration: list[dict[str, Any]],
    runs: list[TargetRun],
) -> None:
    failed_runs = [item for item in per_iteration if item["status"] != "completed"]
    scores = [float(item["score"]) for item in per_iteration if item.get("score") is not None]
    out.stats = {"iterations": per_iteration, **_run_stats(runs)}
    if scores:
        out.stats["scores"] = case_stats(scores)
        out.score = out.stats["scores"]["mean"]
    if failed_runs:
        out.passed, out.status = False, EvalStatus.FAILED
        out.reason = failed_runs[0]["reason"]
        return
    if kind == EvalCase.Kind.ACCURACY or (
        kind == EvalCase.Kind.AGENT_AS_JUDGE and (case is None or case.scoring == EvalCase.Scoring.NUMERIC)
    ):
        limit = threshold if threshold is not None else DEFAULT_THRESHOLD
        out.passed = out.score is not None and out.score >= limit
        lead = f"Mean score {out.score:g} over {len(scores)} iteration(s) ({'>=' if out.passed else '<'} {limit:g})."
        out.reason = f"{lead} {per_iteration[-1].get('reason', '')}".strip()
    elif kind == EvalCase.Kind.AGENT_AS_JUDGE:
        out.passed = all(item.get("score") == 1 for item in per_iteration)
        reasons = [item["reason"] for item in per_iteration if (item.get("score") == 1) != out.passed] or [
            per_iteration[-1].get("reason", "")
        ]
        out.reason = f"{'Passed' if out.passed else 'Failed'} the criteria: {reasons[0]}"
    elif kind == EvalCase.Kind.RELIABILITY:
        failing = [item for item in per_iteration if not item["passed"]]
        out.passed = not failing
        out.reason = "Every expected tool call was made, and no other." if out.passed else failing[0]["reason"]
    else:  # performance
        p95 = out.stats.get("latency", {}).get("p95")
        out.passed = threshold is None or (p95 is not None and p95 <= threshold)
        limit = f" (limit {threshold:g}s)" if threshold is not None else ""
        out.reason = f"p50 {out.stats['latency']['p50']:.3f}s, p95 {p95:.3f}s over {len(runs)} run(s){limit}."
        out.score = None
    out.status = EvalStatus.PASSED if out.passed else EvalStatus.FAILED


# ---- the target's runs ------------------------------------------------------------------------------


def _cancelled(eval_run_id: UUID) -> bool:
    """Cancelled, or deleted (its rows are gone: running on would only spend the target's model)."""
    return not EvalRun.objects.filter(pk=eval_run_id).exclude(status=EvalStatus.CANCELLED).exists()


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux: /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _target_run(suite: EvalSuite, message: str, model: Any = None, version: int | None = None) -> TargetRun:
    """One run of the suite's target through the normal pipeline, in a new eval session; with
    `model` (a ModelConfig; agents and teams), the run's copy of the target answers with it; with
    `version`, the target runs as that saved configuration version configured it."""
    session = await db_call(eval_session_create, suite)
    slug = suite.target.slug  # type: ignore[union-attr]
    started = time.perf_counter()
    if model is None:
        handle, events = await arun_events(
            suite.target_kind,
            slug,
            user=session.user,
            message=message,
            session_id=session.pk,
            version=version,
        )
    else:
        handle = await prepare(
            suite.target_kind,
            slug,
            user=session.user,
            message=message,
            session_id=session.pk,
            version=version,
        )
        for name in ("agent", "team"):
            component = getattr(handle, name, None)
            if component is not None:
                # A copy (Django copies the related-object cache too): the cached target keeps its model.
                component = copy.copy(component)
                component.model = model
                setattr(handle, name, component)
        events = await launch(handle, stream=False).wait()
    seconds = time.perf_counter() - started
    memory = _rss_mb()
    row = await db_call(_run_row, handle.run_id)
    calls = []
    for event in events:
        data = event.to_dict()
        if data.get("event") in ("ToolCallStarted", "TeamToolCallStarted") and isinstance(data.get("tool"), dict):
            tool = data["tool"]
            calls.append({"name": tool.get("tool_name", ""), "arguments": tool.get("tool_args") or {}})
    return TargetRun(
        run_id=str(handle.run_id),
        status=row["status"],
        content=row["output"],
        error=row["error"],
        error_type=row["error_type"],
        tool_calls=calls,
        seconds=seconds,
        ttft=row["time_to_first_token"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost=float(row["cost"] or 0),
        memory_mb=round(memory, 2),
    )


def _run_row(run_id: UUID) -> dict[str, Any]:
    return Run.objects.values(
        "status",
        "output",
        "error",
        "error_type",
        "time_to_first_token",
        "input_tokens",
        "output_tokens",
        "cost",
    ).get(pk=run_id)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (what a latency report means by p95 of few samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _run_stats(runs: list[TargetRun]) -> dict[str, Any]:
    if not runs:
        return {}
    latencies = [r.seconds for r in runs]
    ttfts = [r.ttft for r in runs if r.ttft is not None]
    stats: dict[str, Any] = {
        "latency": {
            **case_stats(latencies),
            "p50": round(_percentile(latencies, 50), 4),
            "p95": round(_percentile(latencies, 95), 4),
        },
        "input_tokens": sum(r.input_tokens for r in runs),
        "output_tokens": sum(r.output_tokens for r in runs),
        "cost": round(sum(r.cost for r in runs), 10),
        "memory_mb": {**case_stats([r.memory_mb for r in runs])},
    }
    if ttfts:
        stats["ttft"] = {**case_stats(ttfts), "p50": round(statistics.median(ttfts), 4)}
    return stats


# ---- judging ---------------------------------------------------------------------------------------------


async def _judge(config: Any, schema: dict[str, Any], name: str, prompt: str) -> dict[str, Any]:
    return await ask_json(config, name=name, schema=schema, system=JUDGE_SYSTEM, user=prompt, clamp=True)


def _accuracy_prompt(result: EvalCaseResult, actual: str) -> str:
    return (
        f"The message sent to the system:\n{result.input}\n\n"
        f"The expected answer:\n{result.expected}\n\n"
        f"The system's answer:\n{actual}\n\n"
        "Score from 1 to 10 how well the system's answer matches the expected answer in meaning and "
        "correctness (wording may differ), and give the reason."
    )


def _criteria_prompt(result: EvalCaseResult, actual: str, numeric: bool) -> str:
    ask = (
        "Score from 1 to 10 how well the answer meets the criteria, and give the reason."
        if numeric
        else "Say whether the answer meets the criteria (passed true or false), and give the reason."
    )
    return (
        f"The message sent to the system:\n{result.input}\n\n"
        f"The criteria:\n{result.expected}\n\n"
        f"The system's answer:\n{actual}\n\n{ask}"
    )


def _compare_tool_calls(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]], *, allow_additional: bool = False
) -> dict[str, Any]:
    """Reliability: every expected call made (with the arguments given, when given), and no other
    tool called unless `allow_additional`. Returns passed, missing, unexpected, mismatched (and a
    reason)."""
    made = Counter(call["name"] for call in actual)
    wanted = Counter(call["name"] for call in expected)
    missing = sorted((wanted - made).elements())
    unexpected = [] if allow_additional else sorted(set(made) - set(wanted))
    mismatched = []
    for call in expected:
        if "arguments" not in call or call["name"] in missing:
            continue
        if not any(c["name"] == call["name"] and _args_match(call["arguments"], c.get("arguments")) for c in actual):
            mismatched.append(call["name"])
    passed = not (missing or unexpected or mismatched)
    parts = []
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected: {', '.join(unexpected)}")
    if mismatched:
        parts.append(f"other arguments: {', '.join(mismatched)}")
    return {
        "passed": passed,
        "missing": missing,
        "unexpected": unexpected,
        "mismatched": mismatched,
        "reason": "Tool calls " + "; ".join(parts) + "." if parts else "All expected tool calls made.",
    }


def _args_match(wanted: dict[str, Any], given: Any) -> bool:
    """Each wanted argument is given with an equal value (numbers compare as numbers, the rest as text)."""
    if not isinstance(given, dict):
        return False
    for key, value in wanted.items():
        if key not in given:
            return False
        other = given[key]
        if isinstance(value, int | float) and isinstance(other, int | float):
            if float(value) != float(other):
                return False
        elif str(value).strip() != str(other).strip():
            return False
    return True
