"""Idempotent run creation (issue 18, part 6): an `Idempotency-Key` makes a retried POST answer with
the run the first one started — its result, or its stream from the first event while it runs — with
no second model request (the scripted server's log counts them)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from agents_app.models import RunRequest
from sessions_app.models import Run, Session
from tests.conftest import bearer, parse_sse

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(token: str, key: str) -> dict[str, str]:
    return {**bearer(token), "Idempotency-Key": key}


async def test_a_retried_post_returns_the_same_run_and_calls_the_model_once(asgi, agent, token, scripted_model):
    scripted_model.push_text("The one and only answer.")
    url = f"/api/agents/{agent.slug}/runs"
    first = await asgi.post(url, json={"message": "hi"}, headers=_headers(token, "key-1"))
    again = await asgi.post(url, json={"message": "hi"}, headers=_headers(token, "key-1"))
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["content"] == first.json()["content"] == "The one and only answer."
    assert again.json()["metrics"]["input_tokens"] == first.json()["metrics"]["input_tokens"]
    assert len(scripted_model.requests) == 1
    assert await Run.objects.acount() == 1
    # Retried as a stream: the same run's events, from the first.
    streamed = await asgi.post(url, json={"message": "hi", "stream": True}, headers=_headers(token, "key-1"))
    frames = parse_sse(streamed.text)
    assert [f["event_index"] for _, f in frames] == list(range(len(frames)))
    assert frames[-1][1]["run_id"] == first.json()["run_id"] and len(scripted_model.requests) == 1


async def test_a_retry_while_the_run_streams_follows_it_from_the_start(asgi, agent, token, scripted_model):
    words = " ".join(f"w{i}" for i in range(15))
    scripted_model.push_text(words, chunk_delay=0.03)
    url = f"/api/agents/{agent.slug}/runs"
    body = {"message": "count", "stream": True}
    first = asyncio.ensure_future(asgi.post(url, json=body, headers=_headers(token, "streaming")))
    while not await Run.objects.filter(status="running").aexists():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # well into the answer
    retry = await asgi.post(url, json=body, headers=_headers(token, "streaming"))
    first_frames, retry_frames = parse_sse((await first).text), parse_sse(retry.text)
    assert retry_frames == first_frames and retry_frames[-1][0] == "RunCompleted"
    assert len(scripted_model.requests) == 1


async def test_concurrent_duplicates_resolve_to_one_run(asgi, agent, token, scripted_model):
    scripted_model.push_text("once", delay=0.2)
    url = f"/api/agents/{agent.slug}/runs"
    answers = await asyncio.gather(
        *(asgi.post(url, json={"message": "hi"}, headers=_headers(token, "racing")) for _ in range(3))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert len(scripted_model.requests) == 1 and await Run.objects.acount() == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 2


async def test_the_same_key_for_another_request_is_a_422_and_starts_nothing(asgi, agent, token, scripted_model):
    url = f"/api/agents/{agent.slug}/runs"
    assert (await asgi.post(url, json={"message": "hi"}, headers=_headers(token, "k"))).status_code == 200
    r = await asgi.post(url, json={"message": "something else"}, headers=_headers(token, "k"))
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    assert await Run.objects.acount() == 1 and await Session.objects.acount() == 1
    assert len(scripted_model.requests) == 1


async def test_keys_are_per_user_and_expire(asgi, agent, token, other_token, scripted_model):
    url = f"/api/agents/{agent.slug}/runs"
    mine = await asgi.post(url, json={"message": "hi"}, headers=_headers(token, "shared"))
    theirs = await asgi.post(url, json={"message": "hi"}, headers=_headers(other_token, "shared"))
    assert mine.json()["run_id"] != theirs.json()["run_id"] and len(scripted_model.requests) == 2
    await RunRequest.objects.filter(key="shared").aupdate(created_at=timezone.now() - timedelta(hours=25))
    later = await asgi.post(url, json={"message": "hi"}, headers=_headers(token, "shared"))
    assert later.json()["run_id"] != mine.json()["run_id"] and "Idempotent-Replayed" not in later.headers


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "bad\nkey"])
async def test_an_unusable_key_is_a_400(asgi, agent, token, scripted_model, key):
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=_headers(token, key))
    assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key"
    assert await Run.objects.acount() == 0


async def test_agnos_run_route_honours_the_key(asgi, agent, token, scripted_model):
    scripted_model.push_text("Hello.")
    url = f"/os/agents/{agent.slug}/runs"
    first = await asgi.post(url, data={"message": "hi", "stream": "false"}, headers=_headers(token, "os-key"))
    again = await asgi.post(url, data={"message": "hi", "stream": "false"}, headers=_headers(token, "os-key"))
    assert first.status_code == again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"] and again.json()["content"] == "Hello."
    assert again.headers["Idempotent-Replayed"] == "true"
    streamed = await asgi.post(url, data={"message": "hi"}, headers=_headers(token, "os-key"))
    frames = parse_sse(streamed.text)
    assert frames[0][1]["agent_name"] == agent.name and frames[-1][0] == "RunCompleted"
    assert len(scripted_model.requests) == 1


async def test_old_keys_are_purged_on_schedule(asgi, agent, token, scripted_model):
    from asgiref.sync import sync_to_async

    from agents_app.tasks import run_requests_purge_task

    url = f"/api/agents/{agent.slug}/runs"
    for key in ("old-1", "old-2", "fresh"):
        assert (await asgi.post(url, json={"message": key}, headers=_headers(token, key))).status_code == 200
    await RunRequest.objects.filter(key__startswith="old").aupdate(created_at=timezone.now() - timedelta(hours=25))
    assert await sync_to_async(run_requests_purge_task)() == 2
    assert [k async for k in RunRequest.objects.values_list("key", flat=True)] == ["fresh"]
    assert await Run.objects.acount() == 3  # only the keys go: the runs stay
