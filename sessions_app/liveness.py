"""Which server processes are alive: a heartbeat per process in the database.

Runs are executed by one process each (agents_app.runtime). When that process dies (a deploy, an
OOM kill, a crash), its runs stay `running` in the database; someone has to notice and settle them,
or their resumers wait forever and their sessions stay busy. Asking the owner over the channel
layer cannot tell "dead" from "the layer is down", so liveness is a database fact instead:

* every process that may share runs with others (a channel layer other than the in-memory one)
  writes `ServerProcess.beat_at` every `PROCESS_HEARTBEAT_SECONDS`;
* each run records its owner (`Run.owner`, this process's id, written with the run's INSERT);
* a run is orphaned when its owner has not beaten for `PROCESS_DEAD_SECONDS` and the run itself is
  older than that (a process that just started its first run may not have beaten yet).

The database was chosen over Redis because it is the one service every deployment has, and the
run rows the decision is about live there: one query answers "which running runs are orphans".
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from sessions_app.conf import agentos_settings
from sessions_app.models import Run, ServerProcess

__all__ = [
    "alive_cutoff",
    "beat",
    "dead_after",
    "forget_dead",
    "orphaned_run_ids",
    "owner_alive",
    "process_id",
    "record_heartbeat",
]

_lock = threading.Lock()
_ids: dict[int, str] = {}
_started: dict[int, Any] = {}


def process_id() -> str:
    """This process's id: new in every process, a forked child included (servers that fork
    workers after importing the app would otherwise share one id)."""
    pid = os.getpid()
    current = _ids.get(pid)
    if current is None:
        with _lock:
            current = _ids.setdefault(pid, uuid.uuid4().hex)
            _started.setdefault(pid, timezone.now())
    return current


def dead_after() -> float:
    return float(agentos_settings.PROCESS_DEAD_SECONDS)


def alive_cutoff() -> Any:
    """Beats (and run starts) at or after this instant prove a process alive."""
    return timezone.now() - timedelta(seconds=dead_after())


def beat() -> None:
    """Record that this server process is alive."""
    record_heartbeat(process_id(), ServerProcess.Kind.SERVER, _started.get(os.getpid()))


def record_heartbeat(pk: str, kind: str, started_at: Any = None) -> None:
    """Write a process's heartbeat row (one UPDATE; an INSERT the first time): server processes
    here, Celery workers and beat from agents_app.health."""
    now = timezone.now()
    if not ServerProcess.objects.filter(pk=pk).update(beat_at=now):
        ServerProcess.objects.update_or_create(
            pk=pk,
            defaults={"beat_at": now},
            create_defaults={
                "beat_at": now,
                "kind": kind,
                "started_at": started_at or now,
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
            },
        )


def owner_alive(owner: str, created_at: float) -> bool:
    """Whether the process `owner` may still be executing a run created at `created_at` (epoch
    seconds). Unknown owners ("") count as alive: such a run is not ours to judge by heartbeat."""
    if not owner or owner == process_id() or created_at >= time.time() - dead_after():
        return True
    return ServerProcess.objects.filter(pk=owner, beat_at__gte=alive_cutoff()).exists()


def orphaned_run_ids(limit: int = 100) -> list[Any]:
    """Running runs whose owner stopped beating, oldest first."""
    cutoff = alive_cutoff()
    alive = ServerProcess.objects.filter(beat_at__gte=cutoff).values("pk")
    rows = (
        Run.objects.filter(status=Run.Status.RUNNING, created_at__lt=cutoff)
        .exclude(Q(owner="") | Q(owner=process_id()) | Q(owner__in=alive) | Q(resumed_at__gte=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    return list(rows)


def forget_dead(older_than_seconds: float = 3600.0) -> int:
    """Delete the rows of processes silent for long and owning no running run (history needs
    none of them: a run keeps its owner's id)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    busy = Run.objects.filter(status=Run.Status.RUNNING).values("owner")
    deleted, _ = ServerProcess.objects.filter(beat_at__lt=cutoff).exclude(pk__in=busy).delete()
    return deleted


def release_connection() -> None:
    """After a beat from a background thread: drop the connection if CONN_MAX_AGE says so (0 in
    tests, so the test database can be dropped)."""
    close_old_connections()
