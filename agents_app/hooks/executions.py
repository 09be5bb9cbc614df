"""The lifecycle of background hook executions: recorded with the run that triggers them, published
to Celery once that transaction commits, claimed, attempted, retried with backoff, swept when a
message was lost. Celery tasks (agents_app.tasks) and admin actions call this; it publishes tasks by
name, so it never imports the task module (which imports it)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from celery import current_app
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents_app.embedded_worker import ensure_embedded_worker
from agents_app.hooks.calling import call_hook, failure_for
from agents_app.hooks.context import HookContext
from agents_app.hooks.errors import HookError, HookRejected
from agents_app.hooks.registry import DEFAULT_TIMEOUT_SECONDS, POST, hook_registry
from agents_app.models import HookExecution
from sessions_app import logcontext
from sessions_app.conf import agentos_settings
from sessions_app.models import Run
from sessions_app.services import run_finish, session_state_merge

logger = logging.getLogger(__name__)

HOOK_EXECUTE_TASK = "agents_app.hook_execute"

# ---- Hooks: a run's hook results, and the lifecycle of background hook executions ------------------


def run_finish_with_hooks(
    *,
    hook_input: str | None,
    deferred: list[Callable[[], Any]],
    background: list[tuple[str, str, int, int, float]],
    **finish: Any,
) -> bool:
    """`run_finish`, plus what the run's hooks produced, in the same transaction: the input as the
    pre-hooks rewrote it (stored as the run's input and its user message), the database writes of
    successful inline hooks (HookContext.on_success), and one HookExecution row per background hook
    (name, phase, position, max_attempts, timeout seconds), published to Celery only once the
    transaction has committed."""
    run_id = finish["run_id"]

    def also() -> None:
        if hook_input is not None:
            Run.objects.filter(pk=run_id).update(input=hook_input)
        for write in deferred:
            write()
        if background:
            rows = HookExecution.objects.bulk_create(
                [
                    HookExecution(
                        run_id=run_id,
                        hook_name=name,
                        phase=phase,
                        position=position,
                        max_attempts=attempts,
                        timeout_seconds=timeout,
                    )
                    for name, phase, position, attempts, timeout in background
                ]
            )
            if any(row.pk is None for row in rows):  # a database that returns no ids from bulk inserts
                rows = list(HookExecution.objects.filter(run_id=run_id).only("pk", "hook_name", "timeout_seconds"))
            executions = [(row.pk, row.hook_name, row.timeout_seconds) for row in rows]
            # robust: a broker that is down must not fail a run that is already stored (the sweep
            # re-publishes whatever could not be published).
            transaction.on_commit(partial(hook_executions_publish, executions=executions), robust=True)

    return run_finish(**finish, on_finish=also)


def _hook_timeout(name: str, planned: float | None) -> float:
    """Seconds per attempt of a background execution: as planned for its run (the agent's hook row
    may override the decorator's), else the registered hook's, else the default."""
    if planned is not None:
        return float(planned)
    item = hook_registry.get(name)
    return item.timeout if item is not None else DEFAULT_TIMEOUT_SECONDS


def hook_executions_publish(*, executions: list[tuple[int, str, float | None]]) -> int:
    """Send one Celery task per (execution id, hook name, planned timeout); return how many were
    sent. Called after
    the recording transaction committed, so a worker always finds the row. In embedded mode this
    also starts the in-process worker thread on first use."""
    ensure_embedded_worker(current_app)
    grace = float(agentos_settings.HOOKS_LEASE_GRACE_SECONDS)
    sent = 0
    for execution_id, name, planned in executions:
        timeout = _hook_timeout(name, planned)
        try:
            # The hard time limit (prefork workers) stops a hook stuck beyond its own timeout.
            current_app.send_task(HOOK_EXECUTE_TASK, (execution_id,), time_limit=timeout + grace / 2)
        except Exception:  # the broker is down: the row stays queued for the sweep
            logger.exception("Could not publish hook execution %s; the periodic sweep will retry.", execution_id)
            continue
        sent += 1
    return sent


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """What one delivery of a hook execution's task did: the execution's status afterwards, and
    whether the task should be delivered again after `retry_in` seconds (a backoff, or a live claim
    held by another worker)."""

    status: str
    retry_in: float | None = None


def _backoff(attempt: int) -> float:
    base = float(agentos_settings.HOOKS_RETRY_BACKOFF_SECONDS)
    cap = float(agentos_settings.HOOKS_RETRY_BACKOFF_MAX_SECONDS)
    return min(base * 2 ** (attempt - 1), cap) * random.uniform(0.8, 1.2)  # jitter


def _settle(execution_id: int, attempt: int, **fields: Any) -> bool:
    """Finish our attempt only if it is still ours (nobody took the execution over meanwhile)."""
    now = timezone.now()
    return bool(
        HookExecution.objects.filter(pk=execution_id, status=HookExecution.Status.RUNNING, attempts=attempt).update(
            lease_expires_at=None, updated_at=now, **fields
        )
    )


def hook_execution_run(*, execution_id: int) -> HookDelivery:
    """Claim a background hook execution, run one attempt of its hook, and record the outcome.

    Idempotent: the claim is a conditional update (queued -> running, or a running attempt whose
    lease expired because its worker died), versioned by the attempt count, so a redelivered or
    duplicated task finds nothing to do (or, while another worker's claim is live, asks to be
    delivered again later). Success, and the session-state changes the hook made, are stored in one
    transaction and only if the attempt is still ours, so they are applied exactly once. A failure
    is retried with backoff up to the hook's limit, then recorded as failed; a rejection is final.
    """
    Status = HookExecution.Status
    for _ in range(3):  # re-read after losing a claim race
        now = timezone.now()
        row = (
            HookExecution.objects.select_related("run__session", "run__user", "run__agent__model", "run__team__model")
            .filter(pk=execution_id)
            .first()
        )
        if row is None:
            return HookDelivery(status="missing")  # the run was deleted with its session
        if row.status in (Status.SUCCEEDED, Status.FAILED):
            return HookDelivery(status=row.status)
        if row.status == Status.QUEUED and row.next_attempt_at and row.next_attempt_at > now:
            return HookDelivery(status=row.status, retry_in=(row.next_attempt_at - now).total_seconds())
        if row.status == Status.RUNNING and row.lease_expires_at and row.lease_expires_at > now:
            return HookDelivery(status=row.status, retry_in=(row.lease_expires_at - now).total_seconds() + 1)
        if row.status == Status.RUNNING and row.attempts >= row.max_attempts:
            # The last attempt's worker died (killed, out of memory, time limit) and none are left.
            HookExecution.objects.filter(pk=row.pk, status=Status.RUNNING, attempts=row.attempts).update(
                status=Status.FAILED,
                error=f"Attempt {row.attempts} of {row.max_attempts} never finished (its worker stopped).",
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
            continue
        timeout = _hook_timeout(row.hook_name, row.timeout_seconds)
        lease = now + timedelta(seconds=timeout + float(agentos_settings.HOOKS_LEASE_GRACE_SECONDS))
        claimed = (
            HookExecution.objects.filter(pk=row.pk, status=row.status, attempts=row.attempts)
            .filter(Q(status=Status.QUEUED) | Q(status=Status.RUNNING, lease_expires_at__lte=now))
            .update(
                status=Status.RUNNING,
                attempts=row.attempts + 1,
                started_at=now,
                lease_expires_at=lease,
                next_attempt_at=None,
                updated_at=now,
            )
        )
        if claimed:
            # (The run's ids cost a query or two: only read when the log lines carry them.)
            with logcontext.run_context(**(_log_fields(row.run) if logcontext.enabled() else {})):
                return _claimed(row)
    row = HookExecution.objects.filter(pk=execution_id).only("status").first()
    return HookDelivery(status=row.status if row else "missing")


def _log_fields(run: Run) -> dict[str, Any]:
    """The run a background hook works for, for its log lines (sessions_app.logcontext)."""
    kind, component = ("team", run.team) if run.team_id else ("agent", run.agent)
    return {
        "run_id": run.pk,
        "session_id": run.session_id,
        "kind": kind,
        "component_id": component.slug if component is not None else None,
        "user_id": run.user_id,
    }


def _claimed(row: HookExecution) -> HookDelivery:
    """Run the attempt just claimed (`row` as it was read before the claim)."""
    if row.status == HookExecution.Status.RUNNING:
        # The record of the lost attempt: the row keeps only the last one's outcome.
        logger.warning(
            "Background hook %s (execution %s): attempt %d of %d never finished (its worker stopped; "
            "its lease expired at %s); starting attempt %d.",
            row.hook_name,
            row.pk,
            row.attempts,
            row.max_attempts,
            row.lease_expires_at.isoformat() if row.lease_expires_at else "?",
            row.attempts + 1,
        )
    return _attempt(row, row.attempts + 1)


def _attempt(row: HookExecution, attempt: int) -> HookDelivery:
    Status = HookExecution.Status
    run = row.run
    item = hook_registry.get(row.hook_name)
    if item is not None and row.timeout_seconds is not None:
        item = dataclasses.replace(item, timeout=float(row.timeout_seconds))
    state_before = copy.deepcopy(run.session.state if isinstance(run.session.state, dict) else {})
    started = time.perf_counter()
    error = ""
    final = False
    ctx: HookContext | None = None
    if item is None:
        error = f"No hook named {row.hook_name!r} is registered in this worker (check AGENTOS['HOOK_MODULES'])."
    else:
        is_json = run.output_json is not None
        ctx = HookContext(
            hook_name=row.hook_name,
            phase=row.phase,
            background=True,
            attempt=attempt,
            agent=run.agent,
            team=run.team,
            run=run,
            session=run.session,
            user=run.user,
            input=run.input,
            output=(run.output_json if is_json else run.output) if row.phase == POST else None,
            output_type="json" if is_json else "str",
            session_state=copy.deepcopy(state_before),
        )

        try:
            async_to_sync(call_hook)(item, ctx)
        except HookRejected as exc:
            error = f"Rejected: {exc.reason} (a background hook cannot stop a run that has already answered)."
            final = True
        except Exception as exc:  # every failure of a hook is recorded, then retried
            error = str(failure_for(item, exc))
            logger.warning(
                "Background hook %s (execution %s, attempt %d/%d) failed: %r",
                row.hook_name,
                row.pk,
                attempt,
                row.max_attempts,
                exc,
                exc_info=not isinstance(exc, TimeoutError | HookError),
            )
    duration = time.perf_counter() - started
    now = timezone.now()
    if not error:
        assert ctx is not None
        state = ctx.session_state
        state_set = {k: v for k, v in state.items() if k not in state_before or state_before[k] != v}
        state_unset = [k for k in state_before if k not in state]
        with transaction.atomic():
            if not _settle(row.pk, attempt, status=Status.SUCCEEDED, error="", duration=duration, finished_at=now):
                return HookDelivery(status="superseded")  # our claim expired and another attempt took over
            if state_set or state_unset:
                session_state_merge(session_id=run.session_id, state_set=state_set, state_unset=state_unset)
            for write in ctx.deferred:
                write()
        return HookDelivery(status=Status.SUCCEEDED)
    if not final and attempt < row.max_attempts:
        delay = _backoff(attempt)
        if not _settle(
            row.pk,
            attempt,
            status=Status.QUEUED,
            error=error,
            duration=duration,
            next_attempt_at=now + timedelta(seconds=delay),
        ):
            return HookDelivery(status="superseded")
        return HookDelivery(status=Status.QUEUED, retry_in=delay)
    if not _settle(row.pk, attempt, status=Status.FAILED, error=error, duration=duration, finished_at=now):
        return HookDelivery(status="superseded")
    return HookDelivery(status=Status.FAILED)


def hook_executions_sweep(*, limit: int = 500) -> int:
    """Re-publish executions whose task may have been lost: queued and untouched for
    HOOKS_SWEEP_AFTER_SECONDS, or running with an expired lease (its worker died: the lease is the
    evidence, so there is no further wait; HOOKS_LEASE_GRACE_SECONDS keeps one expired execution from
    being re-published on every sweep). Duplicates are harmless (the claim is idempotent). Celery beat
    runs this every minute, so a dead worker's hook runs again within its lease plus about a minute;
    the embedded worker sweeps when it starts and every minute."""
    now = timezone.now()
    stale = now - timedelta(seconds=float(agentos_settings.HOOKS_SWEEP_AFTER_SECONDS))
    republished = now - timedelta(seconds=float(agentos_settings.HOOKS_LEASE_GRACE_SECONDS))
    Status = HookExecution.Status
    executions = list(
        HookExecution.objects.filter(
            Q(status=Status.QUEUED, updated_at__lt=stale)
            | Q(status=Status.RUNNING, lease_expires_at__lt=now, updated_at__lt=republished)
        )
        .order_by("updated_at")
        .values_list("pk", "hook_name", "timeout_seconds")[:limit]
    )
    if not executions:
        return 0
    HookExecution.objects.filter(pk__in=[pk for pk, _, _ in executions]).update(updated_at=now)
    return hook_executions_publish(executions=executions)


def hook_executions_retry(*, executions: Iterable[HookExecution]) -> int:
    """Give failed executions a fresh set of attempts (an admin action); return how many."""
    pks = [e.pk for e in executions]
    with transaction.atomic():
        rows = list(
            HookExecution.objects.filter(pk__in=pks, status=HookExecution.Status.FAILED).values_list(
                "pk", "hook_name", "timeout_seconds"
            )
        )
        HookExecution.objects.filter(pk__in=[pk for pk, _, _ in rows], status=HookExecution.Status.FAILED).update(
            status=HookExecution.Status.QUEUED,
            attempts=0,
            next_attempt_at=None,
            finished_at=None,
            updated_at=timezone.now(),
        )
        if rows:
            transaction.on_commit(partial(hook_executions_publish, executions=rows), robust=True)
    return len(rows)


def hook_metrics() -> Iterable[Any]:
    """Prometheus readings at scrape time (telemetry_app.metrics): executions by status, and the
    age of the oldest one waiting to run (a growing age: no worker takes them)."""
    from django.db.models import Count, Min
    from prometheus_client.core import GaugeMetricFamily

    counts = dict(HookExecution.objects.values_list("status").annotate(n=Count("id")).order_by())
    by_status = GaugeMetricFamily("agentos_hook_executions", "Background hook executions by status.", labels=["status"])
    for status in HookExecution.Status.values:
        by_status.add_metric([status], counts.get(status, 0))
    yield by_status
    oldest = HookExecution.objects.filter(status=HookExecution.Status.QUEUED).aggregate(at=Min("created_at"))["at"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    yield GaugeMetricFamily(
        "agentos_hook_queue_oldest_seconds", "Age of the oldest queued background hook execution.", value=age
    )
