"""Idempotent run creation: an `Idempotency-Key` header makes a retried POST return the run the
first one started, never a second run (and never a second model bill).

Why in the run service and not a middleware that caches responses: a run's answer may be a stream
that is still going, or the stored result of a run that ended; both are the run's, wherever it
executes. So the key maps to the run (`RunRequest`, written in the same transaction as the run's
start), and a repeat answers from the run: its events from the start, live or stored.

- Same user, same key, within AGENTOS["IDEMPOTENCY_SECONDS"] (24 h), same request: the same run.
- Same key, different request (another message, session, component, images...): 422
  `idempotency_key_reused`, nothing started.
- Two requests with one key at once: one run. The second INSERT of the key waits on the unique index
  (PostgreSQL) or the write lock (SQLite) and, once the first commits, fails; its whole start is
  rolled back and it answers with the first one's run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
from django.utils import timezone

from agents_app.models import RunRequest
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    default_detail = "This Idempotency-Key was used for a different request."


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    status = 400


class IdempotentReplay(Exception):
    """The request repeats one that started `run_id`: answer with that run."""

    def __init__(self, run_id: UUID) -> None:
        super().__init__(str(run_id))
        self.run_id = run_id


def check_key(value: str | None) -> str | None:
    """The header's value, or None without one; InvalidIdempotencyKey when unusable."""
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidIdempotencyKey(f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters.")
    return key


def fingerprint(
    *,
    kind: str,
    component_id: str,
    message: str,
    session_id: UUID | None,
    session_state: dict[str, Any] | None = None,
    images: Sequence[Any] = (),
) -> str:
    """What a request asked for, as a hash: a repeat must ask for the same. (`stream` is left out:
    a client may retry a streamed request without streaming, and get the same run's result.)"""
    what = {
        "kind": kind,
        "component": component_id,
        "message": message,
        "session": str(session_id) if session_id else None,
        "state": session_state or None,
        "images": [
            (image.url, hashlib.sha256(image.data).hexdigest() if image.data else "", image.detail) for image in images
        ],
    }
    return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()


def replayed_run(*, user: Any, key: str, fingerprint: str) -> UUID | None:
    """The run a fresh earlier request with this key started (IdempotencyKeyReused if it asked for
    something else), or None. An expired key is forgotten here, so it may start a new run."""
    row = RunRequest.objects.filter(user=user, key=key).values_list("pk", "fingerprint", "run_id", "created_at").first()
    if row is None:
        return None
    cutoff = timezone.now() - timedelta(seconds=float(agentos_settings.IDEMPOTENCY_SECONDS))
    if row[3] < cutoff:  # expired: forgotten (a statement only then), and the key starts a new run
        RunRequest.objects.filter(pk=row[0]).delete()
        return None
    if row[1] != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a different request (another message, session or component) "
            "in the last 24 hours. Use a new key for a new request."
        )
    return row[2]


def remember(*, user: Any, key: str, fingerprint: str, run_id: UUID) -> None:
    """Record the key with the run it started (inside the start's transaction)."""
    RunRequest.objects.create(user=user, key=key, fingerprint=fingerprint, run_id=run_id)


def run_requests_purge(*, batch: int = 5000) -> int:
    """Forget keys older than IDEMPOTENCY_SECONDS (Celery beat, hourly; the embedded worker's sweep):
    at most `batch` rows a call, oldest first, so one call stays short. The number deleted."""
    cutoff = timezone.now() - timedelta(seconds=float(agentos_settings.IDEMPOTENCY_SECONDS))
    old = RunRequest.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", flat=True)
    deleted, _ = RunRequest.objects.filter(pk__in=list(old[:batch])).delete()
    return deleted
