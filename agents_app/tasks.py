"""Celery tasks of agents_app. Thin: they take ids, call a service, and ask Celery to deliver again
when the service says so. Everything else (claiming, retries, the record) is in agents_app.hooks.executions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db import OperationalError

from agents_app.engine.expiry import paused_runs_expire
from agents_app.evals.runner import eval_case_execute
from agents_app.evals.services import eval_cases_sweep, eval_schedules_run
from agents_app.hooks.executions import hook_execution_run, hook_executions_sweep
from agents_app.idempotency import run_requests_purge

DB_ERROR_RETRIES = 20


# A task that delivers one recorded attempt: acknowledged once done (a lost worker's message comes
# back), its attempts counted (and bounded) in the database, not by Celery.
_DELIVERY = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": True, "max_retries": None}


def _deliver(task: Any, attempt: Callable[[], Any]) -> str:
    """Run `attempt` (an idempotent service answering a delivery with `status` and `retry_in`) and
    ask Celery to deliver again when it says so, or when the database was briefly unusable."""
    try:
        delivery = attempt()
    except OperationalError as exc:
        # A locked or busy database (SQLite with concurrent writers) or a dropped connection: the
        # claim is idempotent, so deliver again shortly instead of leaving the work to the
        # periodic sweep; a database that stays unusable fails the task after DB_ERROR_RETRIES.
        if task.request.retries >= DB_ERROR_RETRIES:
            raise
        raise task.retry(exc=exc, countdown=min(0.2 * 2**task.request.retries, 10.0)) from exc
    if delivery.retry_in is not None:
        raise task.retry(countdown=max(delivery.retry_in, 0.0))
    return delivery.status


@shared_task(name="agents_app.hook_execute", **_DELIVERY)
def hook_execute_task(self, execution_id: int) -> str:
    """Run one attempt of a background hook (HookExecution `execution_id`); idempotent."""
    return _deliver(self, lambda: hook_execution_run(execution_id=execution_id))


@shared_task(name="agents_app.hook_executions_sweep", ignore_result=True)
def hook_executions_sweep_task() -> int:
    """Re-publish hook executions whose message was lost (Celery beat, every minute)."""
    return hook_executions_sweep()


@shared_task(name="agents_app.paused_runs_expire", ignore_result=True)
def paused_runs_expire_task() -> int:
    """End the paused runs nobody decided on within their agent's approval timeout (Celery beat,
    every APPROVALS_SWEEP_INTERVAL_SECONDS): their pending tool calls never run. Idempotent."""
    return paused_runs_expire()


@shared_task(name="agents_app.run_requests_purge", ignore_result=True)
def run_requests_purge_task() -> int:
    """Forget Idempotency-Keys older than IDEMPOTENCY_SECONDS (Celery beat, hourly). Idempotent."""
    return run_requests_purge()


@shared_task(name="agents_app.eval_case_execute", **_DELIVERY)
def eval_case_execute_task(self, result_id: int) -> str:
    """Run one case of an eval run (EvalCaseResult `result_id`); idempotent (docs/evals.md). A judge
    model's retryable failure is delivered again after a backoff, up to EVALS_MAX_RETRIES."""
    return _deliver(self, lambda: eval_case_execute(result_id=result_id))


@shared_task(name="agents_app.eval_schedules_run", ignore_result=True)
def eval_schedules_run_task() -> int:
    """Start the eval suites whose schedule is due, and bring back eval cases whose task was lost
    (Celery beat, every few minutes). Idempotent within a period: a suite's last scheduled run decides."""
    return eval_schedules_run() + eval_cases_sweep()


@shared_task(name="agents_app.memory_optimize", acks_late=True, ignore_result=True)
def memory_optimize_task(optimization_id: str) -> str:
    """Consolidate a user's memories (a recorded MemoryOptimization); a redelivery does nothing."""
    from asgiref.sync import async_to_sync

    from agents_app.memory import memories_optimize

    return async_to_sync(memories_optimize)(optimization_id)
