"""Crash recovery in one process: checkpoints of a streaming run, process heartbeats, the takeover
of a dead process's runs (stored as interrupted, with a terminal event every resumer receives), and
a channel layer that is down (tests/test_multiprocess.py kills real server processes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from agents_app.engine.runner import run_prepare
from agents_app.runtime import (
    ChannelLayerUnavailable,
    Runtime,
    _Liveness,
    _settle_interrupted,
    liveness_stop,
)
from sessions_app import liveness
from sessions_app.db import db_call
from sessions_app.models import Message, Run, ServerProcess
from sessions_app.services import run_checkpoint
from telemetry_app.models import TelemetryEvent
from tests.live_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)
DEAD = "d" * 32  # a process that stopped beating


async def prepare(agent: Any, user: Any, message: str, session_id: Any = None) -> Any:
    return await database_sync_to_async(run_prepare)(
        agent_id=agent.slug, user=user, message=message, session_id=session_id
    )


async def collect(events: Any) -> list[dict[str, Any]]:
    return [e async for e in events]


def _orphan(run_id: Any, *, owner: str = DEAD, seconds_ago: float = 60) -> None:
    Run.objects.filter(pk=run_id).update(owner=owner, created_at=timezone.now() - timedelta(seconds=seconds_ago))


def _streamed(n: int) -> list[dict[str, Any]]:
    return [{"event": "RunStarted", "event_index": 0}] + [
        {"event": "RunContent", "event_index": i, "content": f"w{i} "} for i in range(1, n)
    ]


# ---- checkpoints ------------------------------------------------------------------------------


async def test_a_streaming_run_checkpoints_its_output_and_events(agent, user, scripted_model, settings):
    settings.AGENTOS = {**settings.AGENTOS, "RUN_CHECKPOINT_SECONDS": 0.2}
    words = " ".join(f"w{i}" for i in range(30))
    scripted_model.push_text(words, chunk_delay=0.05)
    live = Runtime(remote=False).launch(await prepare(agent, user, "talk"))
    seen: list[tuple[int, str]] = []
    while not live.done:
        await asyncio.sleep(0.1)
        run = await Run.objects.aget(pk=live.run_id)
        if run.status == "running" and run.events:
            seen.append((len(run.events), run.output))
    # Saved while it streamed, growing, each a prefix of the answer with its events in order.
    assert len(seen) >= 3, seen
    assert [n for n, _ in seen] == sorted(n for n, _ in seen) and seen[0][0] < seen[-1][0]
    assert all(words.startswith(output) for _, output in seen) and seen[-1][1]
    run = await Run.objects.aget(pk=live.run_id)
    assert run.status == "completed" and run.output == words
    assert run.events == [e.to_dict() for e in live.events]


async def test_a_checkpoint_never_overwrites_a_stored_run(agent, user, scripted_model):
    scripted_model.push_text("done")
    live = Runtime(remote=False).launch(await prepare(agent, user, "hi"))
    await live.wait()
    saved = await db_call(run_checkpoint, run_id=live.run_id, output="late", events=[])
    run = await Run.objects.aget(pk=live.run_id)
    assert not saved and run.output == "done" and run.events[-1]["event"] == "RunCompleted"


# ---- heartbeats ------------------------------------------------------------------------------


def test_orphans_are_the_running_runs_of_processes_that_stopped_beating(agent, user, settings):
    settings.AGENTOS = {**settings.AGENTOS, "PROCESS_DEAD_SECONDS": 5}
    now = timezone.now()
    ServerProcess.objects.create(id="a" * 32, started_at=now, beat_at=now)  # alive
    ServerProcess.objects.create(id=DEAD, started_at=now, beat_at=now - timedelta(seconds=30))
    runs = {name: run_prepare(agent_id=agent.slug, user=user, message=name).run_id for name in "abcdef"}
    _orphan(runs["a"], owner="a" * 32)  # its process beats
    _orphan(runs["b"])  # dead: an orphan
    _orphan(runs["c"], owner="e" * 32)  # never beat at all: an orphan
    _orphan(runs["d"], seconds_ago=1)  # too young to tell
    _orphan(runs["e"], owner="")  # owner unknown: not judged by heartbeat
    # runs["f"]: made by this process, which is alive by definition.
    assert set(liveness.orphaned_run_ids()) == {runs["b"], runs["c"]}
    assert liveness.owner_alive("a" * 32, 0) and not liveness.owner_alive(DEAD, 0)
    assert liveness.owner_alive(DEAD, timezone.now().timestamp())  # a young run
    assert liveness.owner_alive(liveness.process_id(), 0) and liveness.owner_alive("", 0)


def test_a_heartbeat_records_this_process_and_takes_over_dead_ones(agent, user):
    handle = run_prepare(agent_id=agent.slug, user=user, message="lost")
    Run.objects.filter(pk=handle.run_id).update(events=_streamed(5), output="w1 w2 w3 w4 ")
    _orphan(handle.run_id)
    with override_settings(AGENTOS={"TELEMETRY": True}):
        _Liveness().tick()
    me = ServerProcess.objects.get(pk=liveness.process_id())
    assert me.pid == os.getpid() and (timezone.now() - me.beat_at).total_seconds() < 5
    run = Run.objects.get(pk=handle.run_id)
    assert (run.status, run.error_type, run.output) == ("error", "interrupted", "w1 w2 w3 w4 ")
    assert run.events[:5] == _streamed(5)
    assert run.events[5]["event"] == "RunError" and run.events[5]["event_index"] == 5
    assert run.events[5]["error_type"] == "interrupted" and run.finished_at is not None
    # Its messages are kept like any ended run's: the next message's history has them.
    assert list(Message.objects.filter(run=run).values_list("role", "content")) == [
        ("user", "lost"),
        ("assistant", "w1 w2 w3 w4 "),
    ]
    payloads = [e.payload for e in TelemetryEvent.objects.filter(event_type="agent")]
    assert [(p["run_id"], p["status"]) for p in payloads] == [(str(run.pk), "error")]
    # Settling is once only.
    assert _settle_interrupted(handle.run_id) == "error"
    assert Run.objects.get(pk=handle.run_id).events == run.events


async def test_a_resumer_that_saw_more_than_was_checkpointed_still_gets_the_end(agent, user):
    handle = await prepare(agent, user, "lost")
    await Run.objects.filter(pk=handle.run_id).aupdate(events=_streamed(5), output="w1 w2 w3 w4 ")
    await database_sync_to_async(_settle_interrupted)(handle.run_id)  # by the sweep: it knows no reader
    rt = Runtime(remote=False)
    # This reader saw up to index 8 live before the crash (never checkpointed).
    events = await collect(await rt.subscribe(handle.run_id, user=user, after_event_index=8))
    assert [(e["event"], e["event_index"], e["error_type"]) for e in events] == [("RunError", 9, "interrupted")]
    # A reader that saw less gets the stored end.
    events = await collect(await rt.subscribe(handle.run_id, user=user, after_event_index=3))
    assert [(e["event"], e["event_index"]) for e in events] == [("RunContent", 4), ("RunError", 5)]


async def test_a_follower_takes_over_a_run_whose_process_died(agent, user, settings):
    """Nobody executes the run and its owner is gone: a follower settles it after the events it saw."""
    handle = await prepare(agent, user, "lost")
    await Run.objects.filter(pk=handle.run_id).aupdate(events=_streamed(3))
    await database_sync_to_async(_orphan)(handle.run_id)
    events = await asyncio.wait_for(collect(await Runtime(remote=False).subscribe(handle.run_id, user=user)), 10)
    assert [e["event"] for e in events] == ["RunStarted", "RunContent", "RunContent", "RunError"]
    assert events[-1]["event_index"] == 3 and events[-1]["error_type"] == "interrupted"


async def test_a_run_of_this_process_outside_any_runtime_is_not_taken_over(agent, user):
    """Someone's own `execute` loop in this process: followers read its checkpoints and wait."""
    handle = await prepare(agent, user, "mine")
    await Run.objects.filter(pk=handle.run_id).aupdate(
        events=_streamed(2), created_at=timezone.now() - timedelta(seconds=60)
    )
    follower = asyncio.ensure_future(collect(await Runtime(remote=False).subscribe(handle.run_id, user=user)))
    await asyncio.sleep(1.0)
    assert not follower.done()
    assert (await Run.objects.aget(pk=handle.run_id)).status == "running"
    done = [*_streamed(2), {"event": "RunCompleted", "event_index": 2, "content": "w1 "}]
    await Run.objects.filter(pk=handle.run_id).aupdate(status="completed", events=done)
    events = await asyncio.wait_for(follower, 5)
    assert [e["event_index"] for e in events] == [0, 1, 2]


# ---- a channel layer that is down --------------------------------------------------------------


@pytest.fixture
def dead_layer() -> Any:
    """A Redis channel layer nobody listens on, as if Redis were down for this process."""
    port = free_port()
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        pytest.skip("the free port is taken")
    layers = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "dead": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"], "prefix": f"t-{uuid.uuid4().hex[:8]}"},
        },
    }
    with override_settings(CHANNEL_LAYERS=layers):
        rt = Runtime(layer_alias="dead")
        yield rt
        rt.close()
    liveness_stop()


async def test_without_the_channel_layer_a_cancel_is_a_503_and_a_resume_reads_the_database(agent, user, dead_layer):
    now = timezone.now()
    await ServerProcess.objects.acreate(id="a" * 32, started_at=now, beat_at=now + timedelta(seconds=60))
    handle = await prepare(agent, user, "elsewhere")
    await Run.objects.filter(pk=handle.run_id).aupdate(
        owner="a" * 32, events=_streamed(3), created_at=now - timedelta(seconds=60)
    )
    # Its owner beats, but cannot be reached: not a guess, a clear 503.
    with pytest.raises(ChannelLayerUnavailable) as failed:
        await dead_layer.cancel(handle.run_id, user=user)
    assert (failed.value.status, failed.value.code) == (503, "channel_layer_unavailable")
    assert (await Run.objects.aget(pk=handle.run_id)).status == "running"
    # Resuming follows the checkpoints instead, then the end.
    got: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in await dead_layer.subscribe(handle.run_id, user=user, after_event_index=0):
            got.append(event)

    follower = asyncio.ensure_future(follow())
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.05)
    assert [e["event_index"] for e in got] == [1, 2]
    done = [*_streamed(4), {"event": "RunCompleted", "event_index": 4, "content": "w1 w2 w3 "}]
    await Run.objects.filter(pk=handle.run_id).aupdate(status="completed", events=done)
    await asyncio.wait_for(follower, 10)
    assert [e["event_index"] for e in got] == [1, 2, 3, 4] and got[-1]["event"] == "RunCompleted"


async def test_without_the_channel_layer_a_dead_owners_run_is_still_taken_over(agent, user, dead_layer):
    handle = await prepare(agent, user, "lost")
    await database_sync_to_async(_orphan)(handle.run_id)
    assert await dead_layer.cancel(handle.run_id, user=user) == "cancelled"
    run = await Run.objects.aget(pk=handle.run_id)
    assert run.status == "cancelled" and run.events[-1]["event"] == "RunCancelled"
