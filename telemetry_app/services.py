"""Telemetry writes: recording events into the buffer, flushing the buffer to the collector, and,
on the collector side, creating sender keys and storing received batches.

Recording never fails or slows the caller beyond one INSERT: when telemetry is off it makes no
query at all; when on, it adds one INSERT to the caller's transaction (in a savepoint where a
failed statement would abort the transaction, i.e. PostgreSQL), so that a failure to record
(logged) can never roll back the run it describes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.apps import apps
from django.db import connection, connections, router, transaction
from django.db.models import F
from django.db.models.constants import OnConflict
from django.utils import timezone

from telemetry_app import __version__
from telemetry_app.api import Client, UploadError
from telemetry_app.conf import alpha_features_enabled, telemetry_enabled, telemetry_settings, telemetry_site_id
from telemetry_app.metrics import record_telemetry_upload_failure
from telemetry_app.models import ReceivedEvent, TelemetryEvent, TelemetrySender
from telemetry_app.schemas import (
    RUN_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Batch,
    EventType,
    LaunchEvent,
    RunContent,
    RunCreatedEvent,
    as_version,
)

logger = logging.getLogger(__name__)

# ---- recording (sender side, on the run's path) ---------------------------------------------------

_launch_lock = threading.Lock()
_launch_pending = True  # this process has not recorded its launch event yet


def telemetry_transaction() -> contextlib.AbstractContextManager[Any]:
    """Wrap a run's final writes and its telemetry event in one transaction when telemetry is on
    (one commit for both); when off, nothing: no transaction, no savepoint, no query."""
    return transaction.atomic() if telemetry_enabled() else contextlib.nullcontext()


def telemetry_record_run(
    *,
    event_type: EventType | str,
    run_id: Any,
    session_id: Any,
    component_id: str,
    model: str,
    provider: str,
    status: str,
    input_tokens: int,
    output_tokens: int,
    time_to_first_token: float | None,
    duration: float | None,
    error_type: str = "",
    input: str | None = None,
    output: str | None = None,
    created_at: datetime | None = None,
    cost: float | None = None,
    cache_read_tokens: int = 0,
    config_version: int | None = None,
) -> bool:
    """Record that a run (agent, team, workflow or eval) ended. Never raises; returns whether an
    event was recorded. Message contents (`input`, `output`) are kept only when
    TELEMETRY_INCLUDE_CONTENT is on. The first call in a process also records its launch event
    (in the same INSERT). A run with a configuration version (agents_app.versions) is a version 3
    event carrying its number (`config_version`); a run that cost something or read cached tokens
    is (at least) a version 2 event with its `cost` (its own model calls) and `cache_read_tokens`;
    any other run, the version 1 event that older collectors accept."""
    if not telemetry_enabled():
        return False
    try:
        content = None
        if telemetry_settings.TELEMETRY_INCLUDE_CONTENT and (input or output):
            content = RunContent(input=input or "", output=output or "")
        priced = {}
        if cost or cache_read_tokens:
            priced = {"schema_version": 2, "cost": float(cost or 0), "cache_read_tokens": cache_read_tokens or 0}
        if config_version is not None:
            priced = {**priced, "schema_version": 3, "config_version": config_version}
        event = RunCreatedEvent(
            event_id=uuid.uuid4(),
            created_at=created_at or timezone.now(),
            event_type=EventType(event_type),
            run_id=str(run_id),
            session_id=None if session_id is None else str(session_id),
            component_id=component_id,
            model=model or "",
            provider=provider or "",
            status=status,
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            total_tokens=(input_tokens or 0) + (output_tokens or 0),
            time_to_first_token=time_to_first_token,
            duration=duration,
            error_type=error_type or "",
            content=content,
            **priced,
        )
        _insert([_row(event, event_type=event.event_type), *_take_launch()])
        return True
    except Exception:  # telemetry must never fail the run
        logger.exception("Could not record a telemetry event for run %s", run_id)
        return False


def telemetry_record_launch() -> bool:
    """Record this process's launch event now, if it has not been recorded. Never raises."""
    if not telemetry_enabled():
        return False
    try:
        launch = _take_launch()
        if launch:
            _insert(launch)
        return bool(launch)
    except Exception:
        logger.exception("Could not record the telemetry launch event")
        return False


def telemetry_reset_launch(*, pending: bool = True) -> None:
    """Set whether this process still has to record its launch event (tests, forked workers)."""
    global _launch_pending
    with _launch_lock:
        _launch_pending = pending


def launch_event() -> LaunchEvent:
    """What this site serves: its active agents, and its teams and workflows once those exist."""
    return LaunchEvent(
        event_id=uuid.uuid4(),
        created_at=timezone.now(),
        site_id=telemetry_site_id(),
        version=__version__,
        agents=_served("Agent"),
        teams=_served("Team"),
        workflows=_served("Workflow"),
    )


def _served(model_name: str) -> list[str]:
    try:
        model = apps.get_model("agents_app", model_name)
    except LookupError:
        return []
    qs = model._default_manager.all()
    names = {f.name for f in model._meta.get_fields()}
    if "is_active" in names:
        qs = qs.filter(is_active=True)
    field = "slug" if "slug" in names else "pk"
    return [str(v) for v in qs.order_by(field).values_list(field, flat=True)[:10_000]]


def _take_launch() -> list[dict[str, Any]]:
    """The launch event's row if this process has not recorded it yet (then it has), else none."""
    global _launch_pending
    if not _launch_pending:
        return []
    with _launch_lock:
        if not _launch_pending:
            return []
        _launch_pending = False
    return [_row(launch_event(), event_type="")]


def _row(event: RunCreatedEvent | LaunchEvent, *, event_type: str) -> dict[str, Any]:
    """A buffer row (TelemetryEvent's attribute names) for an event."""
    return {
        "id": event.event_id,
        "kind": str(event.kind),
        "event_type": str(event_type),
        "payload": event.model_dump(mode="json"),
        "created_at": event.created_at,
        "next_attempt_at": event.created_at,
        "attempts": 0,
        "claim": None,
        "delivered_at": None,
        "last_error": "",
    }


_INSERT_SQL: dict[tuple[Any, ...], str] = {}


def _insert(rows: list[dict[str, Any]]) -> None:
    """Put run/launch events in the buffer: one INSERT, in a savepoint where that is needed.

    Inside the caller's transaction the statement gets a savepoint on backends where a failed
    statement aborts the whole transaction (PostgreSQL); SQLite rolls back just the failed
    statement, so there the savepoint (two more statements) is skipped.
    """
    alias = router.db_for_write(TelemetryEvent)
    conn = connections[alias]
    if conn.in_atomic_block and conn.vendor != "sqlite":
        with transaction.atomic(using=alias):
            insert_rows(TelemetryEvent, rows, using=alias)
    else:
        insert_rows(TelemetryEvent, rows, using=alias)


def insert_rows(model: Any, rows: list[dict[str, Any]], *, using: str, ignore_conflicts: bool = False) -> None:
    """INSERT rows (dicts by attribute name; auto primary keys omitted) in statements of up to 500
    rows, without what `bulk_create` redoes on every call (model instances, query compilation,
    connection proxy lookups: about two thirds of its time). Each value is still converted by its
    field for the backend; `ignore_conflicts` uses the backend's own syntax (OR IGNORE / ON
    CONFLICT DO NOTHING), so a row that breaks a unique constraint is skipped.
    """
    conn = connections[using]
    fields = [
        f for f in model._meta.concrete_fields if not (f.primary_key and f.get_internal_type().endswith("AutoField"))
    ]
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        key = (model._meta.label, using, conn.vendor, len(chunk), ignore_conflicts)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            on_conflict = OnConflict.IGNORE if ignore_conflicts else None
            quote = conn.ops.quote_name
            one = "(" + ", ".join(["%s"] * len(fields)) + ")"
            suffix = conn.ops.on_conflict_suffix_sql(fields, on_conflict, None, None) if on_conflict else ""
            sql = (
                f"{conn.ops.insert_statement(on_conflict=on_conflict)} {quote(model._meta.db_table)} "
                f"({', '.join(quote(f.column) for f in fields)}) VALUES {', '.join([one] * len(chunk))} {suffix}"
            ).rstrip()
            _INSERT_SQL[key] = sql
        params = [f.get_db_prep_save(row[f.attname], conn) for row in chunk for f in fields]
        with conn.cursor() as cursor:
            cursor.execute(sql, params)


# ---- flushing (sender side, Celery beat / manage.py telemetry_flush) ------------------------------


@dataclass
class FlushResult:
    enabled: bool = True
    batches: int = 0
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    expired: int = 0
    purged: int = 0
    error: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _backoff_seconds(attempts: int) -> float:
    base = float(telemetry_settings.TELEMETRY_BACKOFF_BASE_SECONDS)
    cap = float(telemetry_settings.TELEMETRY_BACKOFF_MAX_SECONDS)
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.9, 1.1)  # jitter, so senders that failed together spread out


@dataclass(frozen=True)
class _Claim:
    """The rows one flush holds for one upload: marked with `token`, leased until `until`."""

    token: uuid.UUID
    until: datetime
    rows: list[tuple[uuid.UUID, Any, int]]  # (id, payload, attempts), oldest first

    def queryset(self) -> Any:
        # `next_attempt_at = until` lets the "due" index find the rows (no scan of delivered rows).
        return TelemetryEvent.objects.filter(delivered_at__isnull=True, next_attempt_at=self.until, claim=self.token)


def _claim(*, size: int, now: datetime, lease: float) -> _Claim:
    """Claim up to `size` undelivered, due events for one upload.

    The rows' next_attempt_at moves to the end of the lease, and the UPDATE repeats the "due"
    condition, so two flushes never hold the same row (each claims what the other has not; on
    PostgreSQL the candidates are also locked with SKIP LOCKED); a flush that dies mid-upload
    leaves its rows to be claimed again when the lease ends.
    """
    claim = _Claim(token=uuid.uuid4(), until=now + timedelta(seconds=lease), rows=[])
    due = TelemetryEvent.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now)
    with transaction.atomic():
        candidates = due.order_by("next_attempt_at", "created_at")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:size])
        if not ids:
            return claim
        due.filter(pk__in=ids).update(claim=claim.token, next_attempt_at=claim.until)
    claim.rows.extend(claim.queryset().order_by("created_at").values_list("pk", "payload", "attempts"))
    return claim


def _batch_body(payloads: list[Any], now: datetime) -> bytes:
    """The upload's JSON; run events newer than the collector accepts (TELEMETRY_MAX_SCHEMA_VERSION)
    are sent as the version it accepts."""
    version = int(telemetry_settings.TELEMETRY_MAX_SCHEMA_VERSION)
    if version < RUN_SCHEMA_VERSION:
        payloads = [as_version(payload, version) for payload in payloads]
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "site_id": telemetry_site_id(),
            "sent_at": now.isoformat(),
            "events": payloads,
        }
    )


def telemetry_flush(
    *,
    client: Client | None = None,
    now: datetime | None = None,
    max_batches: int | None = None,
    time_budget: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> FlushResult:
    """Upload due events in batches until none are due, an upload fails, `max_batches` is reached or
    the time budget (default: 80% of the flush interval) is spent. Delivered rows are marked; a
    failed batch keeps its rows and backs off (exponentially, capped); a batch the collector
    refuses as too large or invalid is halved until the culprit is a single event, which is dropped.
    Undelivered events older than the maximum age are dropped and counted. `on_batch(n)`: called with
    the number of events each delivered batch held (the command's progress bar).
    """
    result = FlushResult()
    if not telemetry_enabled():
        result.enabled = False
        return result
    started = time.monotonic()
    now = now or timezone.now()
    budget = (
        time_budget if time_budget is not None else 0.8 * float(telemetry_settings.TELEMETRY_FLUSH_INTERVAL_SECONDS)
    )
    max_age = timedelta(seconds=float(telemetry_settings.TELEMETRY_MAX_AGE_SECONDS))
    result.expired, result.purged = _expire(now - max_age)
    if result.expired:
        logger.warning("Dropped %d telemetry events older than %s that were never delivered", result.expired, max_age)

    full_size = size = max(1, int(telemetry_settings.TELEMETRY_BATCH_SIZE))
    lease = 2 * float(telemetry_settings.TELEMETRY_TIMEOUT_SECONDS) + 30
    compress = alpha_features_enabled()
    own_client = client is None
    client = client or Client.from_settings()
    try:
        while (max_batches is None or result.batches < max_batches) and time.monotonic() - started <= budget:
            claim = _claim(size=size, now=now, lease=lease)
            rows = claim.rows
            if not rows:
                break
            try:
                client.post_batch(_batch_body([payload for _, payload, _ in rows], now), compress=compress)
            except UploadError as exc:
                result.error = str(exc)[:500]
                if exc.status in (400, 413, 422):
                    if len(rows) > 1:  # give the rows back, first in line again, and try half as many
                        claim.queryset().update(claim=None, next_attempt_at=F("created_at"))
                        size = max(1, len(rows) // 2)
                        continue
                    claim.queryset().delete()
                    result.rejected += 1
                    logger.error("The telemetry collector refused event %s: %s", rows[0][0], exc)
                    continue
                attempts = 1 + max(a for _, _, a in rows)
                claim.queryset().update(
                    claim=None,
                    attempts=F("attempts") + 1,
                    next_attempt_at=now + timedelta(seconds=_backoff_seconds(attempts)),
                    last_error=result.error,
                )
                result.failed += len(rows)
                record_telemetry_upload_failure()
                logger.warning("Telemetry upload of %d events failed (attempt %d): %s", len(rows), attempts, exc)
                break
            # If this flush outlived its lease and another one re-claimed the rows, they are left to
            # that one (which re-sends them; the collector de-duplicates).
            claim.queryset().update(delivered_at=timezone.now(), claim=None, last_error="")
            result.batches += 1
            result.delivered += len(rows)
            if on_batch is not None:
                on_batch(len(rows))
            if len(rows) < size:
                break
            size = min(full_size, size * 2)
            now = max(now, timezone.now())
    finally:
        if own_client:
            client.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _expire(cutoff: datetime) -> tuple[int, int]:
    expired, _ = TelemetryEvent.objects.filter(delivered_at__isnull=True, created_at__lt=cutoff).delete()
    purged, _ = TelemetryEvent.objects.filter(delivered_at__lt=cutoff).delete()
    return expired, purged


# ---- collector side ---------------------------------------------------------------------------------

KEY_PREFIX = "ats_"


def hash_key(key: str) -> str:
    """Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password KDF needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_sender_key(sender: TelemetrySender) -> str:
    """Give `sender` a fresh key (unsaved) and return it: the only time the key is seen."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    sender.key_prefix = key[:10]
    sender.key_hash = hash_key(key)
    return key


def telemetry_sender_create(*, name: str) -> tuple[TelemetrySender, str]:
    """A new sender and its key. The key is returned once and never stored (only its hash)."""
    sender = TelemetrySender(name=name)
    key = new_sender_key(sender)
    sender.save()
    return sender, key


def telemetry_sender_rotate_key(*, sender: TelemetrySender) -> str:
    key = new_sender_key(sender)
    sender.save(update_fields=["key_prefix", "key_hash", "updated_at"])
    return key


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int


def telemetry_ingest_batch(*, sender: TelemetrySender, batch: Batch) -> IngestResult:
    """Store a validated batch: all of it or nothing, each event once per sender (a retried batch,
    or an event repeated within a batch, is not stored again)."""
    unique = {event.event_id: event for event in batch.events}
    received_at = timezone.now()
    alias = router.db_for_write(ReceivedEvent)
    with transaction.atomic(using=alias):
        seen = set(
            ReceivedEvent.objects.filter(sender=sender, event_id__in=list(unique)).values_list("event_id", flat=True)
        )
        rows = [
            {
                "sender_id": sender.pk,
                "event_id": event_id,
                "kind": str(event.kind),
                "event_type": str(getattr(event, "event_type", "")),
                "site_id": batch.site_id,
                "payload": event.model_dump(mode="json"),
                "created_at": event.created_at,
                "received_at": received_at,
            }
            for event_id, event in unique.items()
            if event_id not in seen
        ]
        # ignore_conflicts: a concurrent retry of the same batch cannot store an event twice.
        insert_rows(ReceivedEvent, rows, using=alias, ignore_conflicts=True)
        TelemetrySender.objects.filter(pk=sender.pk).update(last_seen_at=received_at)
    return IngestResult(received=len(batch.events), stored=len(rows), duplicates=len(batch.events) - len(rows))
