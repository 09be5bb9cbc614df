"""Celery tasks of agents_app. Thin: they take ids, call a service, and ask Celery to deliver again
when the service says so. Everything else (claiming, retries, the record) is in agents_app.services."""

from __future__ import annotations

from celery import shared_task

from agents_app.services import hook_execution_run, hook_executions_sweep


@shared_task(
    bind=True,
    name="agents_app.hook_execute",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # attempts are counted (and bounded) in the database, per hook
)
def hook_execute_task(self, execution_id: int) -> str:
    """Run one attempt of a background hook (HookExecution `execution_id`); idempotent."""
    delivery = hook_execution_run(execution_id=execution_id)
    if delivery.retry_in is not None:
        raise self.retry(countdown=max(delivery.retry_in, 0.0))
    return delivery.status


@shared_task(name="agents_app.hook_executions_sweep", ignore_result=True)
def hook_executions_sweep_task() -> int:
    """Re-publish hook executions whose message was lost (Celery beat, every minute)."""
    return hook_executions_sweep()
