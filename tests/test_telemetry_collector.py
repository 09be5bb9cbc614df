"""The collector endpoint, POST /api/telemetry/batches: sender keys, validation (all or nothing),
size limits, de-duplication by (sender, event id)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from telemetry_app.models import ReceivedEvent, TelemetrySender
from telemetry_app.routes import ApiRoutes
from telemetry_app.services import hash_key, telemetry_sender_create

pytestmark = pytest.mark.django_db
URL = ApiRoutes.BATCHES


def run_event(**overrides) -> dict:
    return {
        "schema_version": 1,
        "kind": "run_created",
        "event_id": str(uuid.uuid4()),
        "created_at": "2026-11-20T10:00:00Z",
        "event_type": "agent",
        "run_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "component_id": "demo",
        "model": "gpt-x",
        "provider": "openai",
        "status": "completed",
        "input_tokens": 12,
        "output_tokens": 30,
        "total_tokens": 42,
        "time_to_first_token": 0.2,
        "duration": 1.25,
        "error_type": "",
        "content": None,
    } | overrides


def launch_event(**overrides) -> dict:
    return {
        "kind": "launch",
        "event_id": str(uuid.uuid4()),
        "created_at": "2026-11-20T09:00:00Z",
        "site_id": "site-a",
        "version": "0.1.0",
        "agents": ["demo"],
    } | overrides


def batch(*events: dict, **overrides) -> dict:
    return {"schema_version": 1, "site_id": "site-a", "sent_at": "2026-11-20T10:01:00Z", "events": list(events)} | (
        overrides
    )


@pytest.fixture
def sender_key() -> str:
    _sender, key = telemetry_sender_create(name="site-a")
    return key


def post(body, key: str | None = None, *, raw: bytes | None = None, **headers):
    client = Client()
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    extra |= headers
    data = raw if raw is not None else json.dumps(body)
    content_type = extra.pop("content_type", "application/json")
    return client.post(URL, data=data, content_type=content_type, **extra)


def test_a_batch_is_stored_and_answered_with_counts(sender_key):
    events = [run_event(), launch_event()]
    r = post(batch(*events), sender_key)
    assert r.status_code == 202, r.content
    assert r.json() == {"received": 2, "stored": 2, "duplicates": 0}
    sender = TelemetrySender.objects.get()
    assert sender.last_seen_at is not None
    stored = {str(e.event_id): e for e in ReceivedEvent.objects.all()}
    assert set(stored) == {e["event_id"] for e in events}
    run = stored[events[0]["event_id"]]
    assert (run.kind, run.event_type, run.site_id, run.sender_id) == ("run_created", "agent", "site-a", sender.pk)
    assert run.created_at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    assert run.payload["total_tokens"] == 42 and run.payload["event_id"] == events[0]["event_id"]
    assert stored[events[1]["event_id"]].kind == "launch"


def test_a_retried_batch_is_never_counted_twice(sender_key):
    events = [run_event(), run_event()]
    assert post(batch(*events), sender_key).json() == {"received": 2, "stored": 2, "duplicates": 0}
    again = post(batch(*events, run_event()), sender_key)
    assert again.json() == {"received": 3, "stored": 1, "duplicates": 2}
    assert ReceivedEvent.objects.count() == 3


def test_an_event_repeated_within_a_batch_is_stored_once(sender_key):
    event = run_event()
    assert post(batch(event, event), sender_key).json() == {"received": 2, "stored": 1, "duplicates": 1}
    assert ReceivedEvent.objects.count() == 1


def test_the_same_event_id_from_two_senders_is_two_events(sender_key):
    _other, other_key = telemetry_sender_create(name="site-b")
    event = run_event()
    assert post(batch(event), sender_key).status_code == 202
    assert post(batch(event, site_id="site-b"), other_key).status_code == 202
    assert ReceivedEvent.objects.filter(event_id=event["event_id"]).count() == 2


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer nope", "Bearer", "Token abc", "Bearer a b"],
)
def test_without_a_valid_sender_key_nothing_is_stored(sender_key, auth):
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    r = post(batch(run_event()), **headers)
    assert r.status_code == 401, r.content
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="telemetry"'
    assert ReceivedEvent.objects.count() == 0


def test_an_inactive_sender_or_a_user_token_is_refused(sender_key, user):
    TelemetrySender.objects.update(is_active=False)
    assert post(batch(run_event()), sender_key).status_code == 401
    user_token = Token.objects.create(user=user).key
    assert post(batch(run_event()), user_token).status_code == 401
    assert ReceivedEvent.objects.count() == 0


def test_one_invalid_event_refuses_the_whole_batch(sender_key):
    r = post(batch(run_event(), run_event(input_tokens=-5), run_event()), sender_key)
    assert r.status_code == 400
    body = r.json()
    assert (body["detail"], body["code"]) == ("Invalid batch: 1 error(s); nothing was stored.", "invalid")
    assert body["errors"] == [
        {
            "loc": "events.1.run_created.input_tokens",
            "msg": "Input should be greater than or equal to 0",
            "type": "greater_than_equal",
        }
    ]
    assert ReceivedEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        batch(run_event(), schema_version=2),
        batch(run_event(kind="mystery")),
        batch(run_event(event_type="robot")),
        batch(run_event(surprise=True)),
        batch(run_event(event_id="not-a-uuid")),
        batch(),
        {"events": [run_event()]},
        [run_event()],
    ],
    ids=["version", "kind", "event-type", "extra-field", "event-id", "empty", "no-site", "not-an-object"],
)
def test_malformed_batches_are_400s(sender_key, body):
    r = post(body, sender_key)
    assert r.status_code == 400, r.content
    assert r.json()["errors"]
    assert ReceivedEvent.objects.count() == 0


def test_a_body_that_is_not_json_is_refused(sender_key):
    assert post(None, sender_key, raw=b"{not json").status_code == 400
    r = post(None, sender_key, raw=b"a=b", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert ReceivedEvent.objects.count() == 0


def test_oversized_batches_are_413s_and_store_nothing(sender_key, settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_COLLECTOR_MAX_EVENTS": 2}
    r = post(batch(run_event(), run_event(), run_event()), sender_key)
    assert r.status_code == 413
    assert r.json() == {
        "detail": "The batch has 3 events; this collector accepts at most 2.",
        "code": "payload_too_large",
    }
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_COLLECTOR_MAX_BYTES": 1000}
    r = post(batch(run_event(), run_event()), sender_key)
    assert r.status_code == 413
    assert ReceivedEvent.objects.count() == 0


def test_gzip_bodies_are_accepted_and_bombs_refused(sender_key, settings):
    body = gzip.compress(json.dumps(batch(run_event())).encode())
    r = post(None, sender_key, raw=body, HTTP_CONTENT_ENCODING="gzip")
    assert r.status_code == 202 and r.json()["stored"] == 1
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_COLLECTOR_MAX_BYTES": 10_000}
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    assert len(bomb) < 10_000
    assert post(None, sender_key, raw=bomb, HTTP_CONTENT_ENCODING="gzip").status_code == 413
    assert post(None, sender_key, raw=b"garbage", HTTP_CONTENT_ENCODING="gzip").status_code == 400
    assert post(None, sender_key, raw=b"{}", HTTP_CONTENT_ENCODING="br").status_code == 415
    assert ReceivedEvent.objects.count() == 1


def test_only_a_hash_of_the_key_is_stored(sender_key):
    sender = TelemetrySender.objects.get()
    assert sender.key_hash == hash_key(sender_key) and sender_key not in (sender.key_hash, sender.key_prefix)
    assert sender_key.startswith(sender.key_prefix) and sender_key.startswith("ats_") and len(sender_key) > 40


def test_the_management_command_prints_a_working_key():
    out = StringIO()
    call_command("telemetry_sender_create", "site-c", stdout=out)
    key = out.getvalue().strip()
    assert post(batch(run_event(), site_id="site-c"), key).status_code == 202
    assert ReceivedEvent.objects.get().sender.name == "site-c"


def test_the_collector_is_in_the_openapi_schema(staff_user):
    client = Client()
    client.force_login(staff_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"][URL]["post"]
    assert set(operation["responses"]) == {"202", "400", "401", "413", "415"}
    assert operation["security"] == [{"telemetrySenderKey": []}]
    assert "events" in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_a_concurrent_duplicate_is_skipped_by_the_unique_constraint(sender_key):
    """The check for already-received events and the INSERT are separate statements: an event that
    another request stored in between is skipped by the database, not stored twice."""
    from telemetry_app.services import insert_rows

    sender = TelemetrySender.objects.get()
    row = {
        "sender_id": sender.pk,
        "event_id": uuid.uuid4(),
        "kind": "run_created",
        "event_type": "agent",
        "site_id": "site-a",
        "payload": {"a": 1},
        "created_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
        "received_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
    }
    insert_rows(ReceivedEvent, [row], using="default", ignore_conflicts=True)
    insert_rows(ReceivedEvent, [row, {**row, "event_id": uuid.uuid4()}], using="default", ignore_conflicts=True)
    assert ReceivedEvent.objects.count() == 2
    assert ReceivedEvent.objects.get(event_id=row["event_id"]).payload == {"a": 1}


def test_a_sender_added_in_the_admin_gets_a_key_shown_once(staff_user):
    client = Client()
    client.force_login(staff_user)
    r = client.post("/admin/telemetry_app/telemetrysender/add/", {"name": "branch", "is_active": "on"}, follow=True)
    assert r.status_code == 200
    shown = [str(m) for m in r.context["messages"]]
    key = next(word for m in shown for word in m.split() if word.startswith("ats_"))
    sender = TelemetrySender.objects.get(name="branch")
    assert sender.key_hash == hash_key(key)
    assert post(batch(run_event(), site_id="branch"), key).status_code == 202
    page = client.get(f"/admin/telemetry_app/telemetrysender/{sender.pk}/change/").content.decode()
    assert key not in page and sender.key_prefix in page
