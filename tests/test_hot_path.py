"""The run path's fast parts (performance issue): the statements with SQL built once
(sessions_app.statements) store and read exactly what the ORM would, the session lock reports
busy and paused sessions, a request's sync work runs on a pooled thread (no thread per request,
sessions_app.asgi), a run outlives its request, and a streamed run's events leave in batches."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app import statements
from sessions_app.asgi import detached_context, pooled_sync_threads
from sessions_app.models import Message, Run, Session
from sessions_app.services import run_finish

from .conftest import parse_sse
from .factories import AgentFactory

pytestmark = pytest.mark.django_db


def _run(session: Session, **fields: Any) -> Run:
    run = Run(session=session, agent=session.agent, user=session.user, input="hello", **fields)
    statements.insert([run])
    return run


def test_insert_stores_what_the_orm_would_and_reads_back_equal(user):
    agent = AgentFactory()
    session = Session(user=user, agent=agent, name="n", state={"k": [1, "é", None]})
    statements.insert([session])
    stored = Session.objects.get(pk=session.pk)
    assert stored.state == {"k": [1, "é", None]} and stored.name == "n" and stored.created_at is not None
    run = _run(stored, cost=Decimal("0.0012345"), model="m")
    again = Run.objects.get(pk=run.pk)
    assert (again.status, again.cost, again.model, again.input) == ("running", Decimal("0.0012345"), "m", "hello")
    assert again.created_at == run.created_at and not run._state.adding
    statements.insert([Message(run=run, role="user", content="x", position=i) for i in range(250)])  # 3 chunks
    assert list(Message.objects.filter(run=run).values_list("position", flat=True).order_by("position")) == list(
        range(250)
    )


def test_the_session_lock_reads_the_session_with_its_busy_and_paused_flags(user, other_user):
    agent = AgentFactory()
    session = Session(user=user, agent=agent, state={"a": 1}, summary="so far")
    statements.insert([session])
    now = timezone.now()
    since = now - timedelta(seconds=60)
    lock = {"session_id": session.pk, "owner": "agent", "owner_id": agent.pk, "now": now, "running_since": since}
    with CaptureQueriesContext(connection) as queries:
        found = statements.session_lock_and_read(user_id=user.pk, **lock)
    assert found is not None
    read, busy, paused = found
    assert (read.pk, read.state, read.summary, busy, paused) == (session.pk, {"a": 1}, "so far", False, False)
    # One statement on SQLite (UPDATE ... RETURNING); PostgreSQL reads after the lock.
    assert len(queries) == (1 if connection.vendor == "sqlite" else 2)
    assert Session.objects.get(pk=session.pk).updated_at == now
    # Another user's, or another component's: nothing, and nothing written.
    assert statements.session_lock_and_read(user_id=other_user.pk, **lock) is None
    assert statements.session_lock_and_read(user_id=user.pk, **{**lock, "owner_id": AgentFactory().pk}) is None
    running = _run(session)
    assert statements.session_lock_and_read(user_id=user.pk, **lock)[1:] == (True, False)
    # A run older than the stale limit does not make the session busy.
    assert (
        statements.session_lock_and_read(user_id=user.pk, **{**lock, "running_since": now + timedelta(1)})[1] is False
    )
    Run.objects.filter(pk=running.pk).update(status=Run.Status.PAUSED)
    assert statements.session_lock_and_read(user_id=user.pk, **lock)[1:] == (False, True)


def test_run_finish_updates_only_a_running_run(user):
    agent = AgentFactory()
    session = Session(user=user, agent=agent)
    statements.insert([session])
    run = _run(session)
    kwargs = {
        "run_id": run.pk,
        "status": "completed",
        "output": "out",
        "output_json": {"x": 1},
        "error": "",
        "error_type": "",
        "messages": [{"role": "assistant", "content": "out"}],
        "metrics": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7, "duration": 0.5},
        "events": [{"event": "RunCompleted", "content": "out"}],
        "user_message": "hello",
        "usage": {"cost": Decimal("0.5"), "total_cost": Decimal("0.75"), "model": "fallback", "provider": "openai"},
    }
    assert run_finish(**kwargs) is True
    stored = Run.objects.get(pk=run.pk)
    assert (stored.status, stored.output_json, stored.total_tokens, stored.cost, stored.model) == (
        "completed",
        {"x": 1},
        7,
        Decimal("0.5"),
        "fallback",
    )
    assert stored.events == [{"event": "RunCompleted", "content": "out"}] and stored.finished_at is not None
    assert list(Message.objects.filter(run=run).order_by("position").values_list("role", "content")) == [
        ("user", "hello"),
        ("assistant", "out"),
    ]
    assert run_finish(**{**kwargs, "output": "again"}) is False  # stored already: left as it was
    assert Run.objects.get(pk=run.pk).output == "out" and Message.objects.filter(run=run).count() == 2


# ---- threads ---------------------------------------------------------------------------------------


async def _asgi(
    app: Any, path: str = "/api/agents/", *, method: str = "GET", body: bytes = b"", headers: tuple = ()
) -> list[dict[str, Any]]:
    """One HTTP request straight through an ASGI app (no server, no client library): the messages it sent."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 20)
    return sent


async def _http(app: Any, path: str = "/api/agents/") -> int:
    return (await _asgi(app, path))[0]["status"]


async def test_requests_reuse_pooled_threads_instead_of_starting_one_each():
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # Two thread-sensitive calls of one request: one thread, the same for both.
        first = await sync_to_async(lambda: threading.current_thread().name)()
        second = await sync_to_async(lambda: threading.current_thread().name)()
        assert first == second
        seen.append(first)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pooled = pooled_sync_threads(app)
    before = threading.active_count()
    for _ in range(20):
        assert await _http(pooled) == 204
    assert threading.active_count() - before <= 1  # one pooled thread at most, not twenty
    assert len(set(seen)) == 1 and seen[0].startswith("django-sync-")
    # Concurrent requests each get a thread of their own while they run.
    await asyncio.gather(*(_http(pooled) for _ in range(3)))
    assert all(name.startswith("django-sync-") for name in seen)


async def test_the_site_serves_through_pooled_threads(token):
    from agentos_site.asgi import application
    from sessions_app import asgi as pooled

    started = pooled._pool._started
    statuses = [await _http(application) for _ in range(10)]
    assert statuses == [401] * 10  # no credentials: the API's own answer, through the whole stack
    # Ten requests, each with thread-sensitive work (Django's request signals): one pooled thread.
    assert pooled._pool._started - started <= 1 and pooled._pool.idle >= 1


async def test_a_task_detached_from_its_request_may_use_thread_sensitive_code_after_it_ends():
    done = asyncio.Event()
    results: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.05)  # the request has ended by now
        results.append(await sync_to_async(lambda: "ran")())
        done.set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        asyncio.get_running_loop().create_task(later(), context=detached_context())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert await _http(pooled_sync_threads(app)) == 204
    await asyncio.wait_for(done.wait(), 5)
    assert results == ["ran"]


# ---- batched streams -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_runs_frames_leave_in_batches_nothing_lost(agent, token, scripted_model):
    """A model's 40 chunks arrive in one network read: the SSE response writes them in a handful
    of body messages, not one each, and every frame is there, in order."""
    from agentos_site.asgi import application

    scripted_model.push_text(" ".join(f"w{i}" for i in range(40)))
    headers = ((b"content-type", b"application/json"), (b"authorization", f"Bearer {token}".encode()))
    body = b'{"message": "hi", "stream": true}'
    sent = await _asgi(application, f"/api/agents/{agent.slug}/runs", method="POST", body=body, headers=headers)
    assert sent[0]["status"] == 200
    chunks = [m["body"] for m in sent[1:] if m.get("body")]
    frames = parse_sse(b"".join(chunks).decode())
    contents = [data["content"] for name, data in frames if name == "RunContent"]
    assert "".join(contents).split() == [f"w{i}" for i in range(40)]
    assert [data["event_index"] for _, data in frames] == list(range(len(frames)))
    assert frames[-1][0] == "RunCompleted"
    assert len(frames) > 40 and len(chunks) <= 12, (len(frames), len(chunks))


@pytest.mark.django_db(transaction=True)
async def test_streamed_runs_reuse_one_connection_to_the_model(asgi, agent, token, scripted_model):
    """A stream read to its end after `[DONE]` returns its connection to the pool: five streamed
    runs, one TCP connection (a real provider would otherwise cost a TLS handshake per run)."""
    for i in range(5):
        scripted_model.push_text(f"answer {i}")
        response = await asgi.post(
            f"/api/agents/{agent.slug}/runs",
            json={"message": f"m{i}", "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert parse_sse(response.text)[-1][0] == "RunCompleted"
    assert scripted_model.connections_opened == 1
