"""The runtime: launching, following and cancelling runs in this process, through the database when
no process has them, and (on Redis) from another runtime, as another server process would."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from agents_app.engine.runner import run_prepare
from agents_app.runtime import RunNotFound, Runtime, RunUnavailable, SessionBusy, liveness_stop
from sessions_app.models import Message, Run, Session
from sessions_app.services import run_finish
from tests.conftest import without_bookkeeping
from tests.redis_helpers import RedisNamespace

pytestmark = pytest.mark.django_db(transaction=True)


async def prepare(agent: Any, user: Any, message: str, session_id: Any = None) -> Any:
    return await database_sync_to_async(run_prepare)(
        agent_id=agent.slug, user=user, message=message, session_id=session_id
    )


async def collect(events: Any) -> list[dict[str, Any]]:
    return [e async for e in events]


async def test_followers_get_the_backlog_then_live_events(agent, user, scripted_model):
    rt = Runtime()
    scripted_model.push_text("a b c d e f", chunk_delay=0.03)
    live = rt.launch(await prepare(agent, user, "letters"))
    early = asyncio.ensure_future(collect(await rt.subscribe(live.run_id, user=user)))
    while len(live.events) < 3:
        await asyncio.sleep(0.01)
    late = await collect(await rt.subscribe(live.run_id, user=user, after_event_index=2))
    everything = await early
    assert [e["event_index"] for e in everything] == list(range(len(everything)))
    assert late == everything[3:]
    assert everything[-1] == {**everything[-1], "event": "RunCompleted", "content": "a b c d e f"}
    with pytest.raises(RunNotFound):
        await rt.subscribe(live.run_id, user=await _other_user())


async def _other_user() -> Any:
    from tests.factories import UserFactory

    return await database_sync_to_async(UserFactory)(username="eve")


async def test_cancel_right_after_launch_still_stores_a_cancelled_run(agent, user, scripted_model):
    rt = Runtime()
    scripted_model.push_text("never heard", delay=1.0)
    live = rt.launch(await prepare(agent, user, "hi"))
    assert await rt.cancel(live.run_id, user=user) == "cancelling"  # before the task even started
    events = await asyncio.wait_for(live.wait(), 3)
    assert without_bookkeeping([e.name for e in events]) == ["RunStarted", "RunCancelled"]
    run = await Run.objects.aget(pk=live.run_id)
    assert run.status == "cancelled" and [e["event"] for e in run.events] == [e.name for e in events]
    assert await rt.cancel(live.run_id, user=user) == "cancelled"  # idempotent


async def test_a_finished_run_is_replayed_from_the_database_by_any_runtime(offline_agent, user):
    live = Runtime().launch(await prepare(offline_agent, user, "what is 2+2?"))
    events = [e.to_dict() for e in await live.wait()]
    elsewhere = Runtime()  # another process: it never saw the run
    assert await collect(await elsewhere.subscribe(live.run_id, user=user)) == events
    assert await collect(await elsewhere.subscribe(live.run_id, user=user, after_event_index=1)) == events[2:]
    assert await elsewhere.cancel(live.run_id, user=user) == "completed"


async def test_a_run_no_process_has_is_followed_through_the_database(offline_agent, user):
    """A run going on outside any runtime (someone's own `execute` loop): followers poll its row."""
    handle = await prepare(offline_agent, user, "hi")
    rt = Runtime(remote=False)
    follower = asyncio.ensure_future(collect(await rt.subscribe(handle.run_id, user=user)))
    await asyncio.sleep(0.3)
    assert not follower.done()
    stored = [{"event": "RunStarted", "event_index": 0, "run_id": str(handle.run_id)}]
    await Run.objects.filter(pk=handle.run_id).aupdate(status="completed", output="done", events=stored)
    events = await asyncio.wait_for(follower, 5)
    # The row had no terminal event: the follower still learns the final state.
    assert [(e["event"], e["event_index"]) for e in events] == [("RunStarted", 0), ("RunCompleted", 1)]
    assert events[-1]["content"] == "done"


async def test_orphaned_runs_are_cancelled_in_the_database_and_do_not_block_sessions(offline_agent, user):
    rt = Runtime(remote=False)
    handle = await prepare(offline_agent, user, "lost")
    # Its process died long ago: the run is stale.
    await Run.objects.filter(pk=handle.run_id).aupdate(created_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(RunUnavailable):
        await collect(await rt.subscribe(handle.run_id, user=user))
    # A stale run does not make its session busy, even under the "reject" policy.
    offline_agent.busy_session_policy = "reject"
    await offline_agent.asave()
    fresh = await prepare(offline_agent, user, "again", handle.session_id)
    await Run.objects.filter(pk=fresh.run_id).aupdate(status="completed")
    # Cancelling the orphan marks it cancelled, and a follower gets a terminal event for it.
    assert await rt.cancel(handle.run_id, user=user) == "cancelled"
    events = await collect(await rt.subscribe(handle.run_id, user=user))
    assert [e["event"] for e in events] == ["RunCancelled"]


async def start(rt: Runtime, **kwargs: Any) -> Any:
    """Prepare under the busy-session policy and launch, on a throwaway runtime (as agents_app.runs does)."""
    return rt.launch(await rt.prepare_with(run_prepare, **kwargs))


async def test_queue_policy_waits_for_a_run_outside_the_runtime(offline_agent, user):
    first = await prepare(offline_agent, user, "first")
    with pytest.raises(SessionBusy) as busy:
        await prepare(offline_agent, user, "second", first.session_id)
    assert (busy.value.policy, busy.value.running_run_ids) == ("queue", [first.run_id])
    rt = Runtime(remote=False)
    waiting = asyncio.ensure_future(
        rt.prepare_with(
            run_prepare, agent_id=offline_agent.slug, user=user, message="second", session_id=first.session_id
        )
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    # The first run ends the way the engine ends runs (its messages written with its outcome).
    await sync_to_async(run_finish)(
        run_id=first.run_id,
        status="completed",
        output="",
        output_json=None,
        error="",
        error_type="",
        messages=[],
        metrics={},
        user_message="first",
    )
    handle = await asyncio.wait_for(waiting, 5)
    assert handle.session_id == first.session_id
    assert [m["content"] for m in handle.history] == ["first"]


async def test_a_run_left_by_a_dead_process_does_not_hold_its_session(offline_agent, user):
    """A restart killed the process of a running run: the next message does not wait for it (under
    any policy); the run is stored as interrupted."""
    lost = await prepare(offline_agent, user, "lost in a restart")
    await Run.objects.filter(pk=lost.run_id).aupdate(
        created_at=timezone.now() - timedelta(seconds=30),
        owner="0" * 32,  # a process that is gone
    )
    offline_agent.busy_session_policy = "reject"
    await offline_agent.asave()
    rt = Runtime(remote=False)
    live = await asyncio.wait_for(
        start(rt, agent_id=offline_agent.slug, user=user, message="next", session_id=lost.session_id), 5
    )
    assert (await live.wait())[-1].name == "RunCompleted"
    lost_run = await Run.objects.aget(pk=lost.run_id)
    assert (lost_run.status, lost_run.error_type) == ("error", "interrupted")


async def test_a_caller_that_goes_away_while_its_run_is_written_still_gets_it_run(offline_agent, user):
    rt = Runtime(remote=False)
    starting = asyncio.ensure_future(start(rt, agent_id=offline_agent.slug, user=user, message="hello?"))
    # Cancel the caller once the run is being (or has just been) written in the database thread.
    for _ in range(400):
        if await Run.objects.filter(input="hello?").aexists():
            break
        await asyncio.sleep(0.005)
    starting.cancel()
    # Either the cancel landed while the run was being written, or just after it was launched:
    # in both cases the run must go on to its answer.
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    for _ in range(200):
        run = await Run.objects.filter(input="hello?").afirst()
        if run is not None and run.status != "running":
            break
        await asyncio.sleep(0.02)
    assert run is not None and run.status == "completed"


async def test_queue_policy_gives_up_after_the_timeout(offline_agent, user, settings):
    settings.AGENTOS = {**settings.AGENTOS, "SESSION_QUEUE_TIMEOUT_SECONDS": 0.3}
    first = await prepare(offline_agent, user, "first")
    with pytest.raises(SessionBusy, match=r"still busy after 0\.3 s"):
        await Runtime(remote=False).prepare_with(
            run_prepare, agent_id=offline_agent.slug, user=user, message="second", session_id=first.session_id
        )
    assert await Message.objects.filter(content="second").acount() == 0


async def test_concurrent_messages_never_share_a_history(offline_agent, user):
    """Ten messages at once into one session: each run starts after the previous one ended and sees
    all of them (queue policy), so no history is interleaved."""
    rt = Runtime(remote=False)
    first = await (rt.launch(await prepare(offline_agent, user, "m0"))).wait()
    session_id = first[0].session_id
    handles = []

    async def send(i: int) -> None:
        handle = await rt.prepare_with(
            run_prepare, agent_id=offline_agent.slug, user=user, message=f"m{i}", session_id=session_id
        )
        handles.append(handle)
        await rt.launch(handle).wait()

    await asyncio.gather(*(send(i) for i in range(1, 11)))
    runs = [r async for r in Run.objects.filter(session_id=session_id).order_by("created_at")]
    assert [r.status for r in runs] == ["completed"] * 11
    for previous, run in itertools.pairwise(runs):
        assert run.created_at >= previous.finished_at  # never overlapping
    # Each saw the answer of the one before it (the agent sends the last 3 runs as history).
    for handle in handles:
        before = [r for r in runs if r.pk != handle.run_id and r.created_at < _created(runs, handle.run_id)]
        assert handle.history[-1] == {"role": "assistant", "content": before[-1].output}
    assert await Session.objects.acount() == 1


def _created(runs: list[Run], run_id: Any) -> Any:
    return next(r.created_at for r in runs if r.pk == run_id)


# ---- two "processes" on Redis ------------------------------------------------------------------


@pytest.fixture
def redis_layer(isolated_redis: RedisNamespace) -> Any:
    """Runtimes on a Redis channel layer of their own: the test Redis (tests/redis_helpers.py) under
    the test's key prefix, each Runtime standing for one server process."""
    layers = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "redis": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [isolated_redis.url], "prefix": isolated_redis.prefix},
        },
    }
    runtimes: list[Runtime] = []

    def make() -> Runtime:
        runtimes.append(Runtime(layer_alias="redis"))
        return runtimes[-1]

    with override_settings(CHANNEL_LAYERS=layers):
        yield make
        for rt in runtimes:
            rt.close()
    # Their launches started this process's heartbeat thread: on SQLite a background writer would
    # make other tests' transactions fail ("database is locked"), so it stops with the fixture.
    liveness_stop()


async def test_another_process_follows_and_cancels_a_run_over_the_channel_layer(
    agent, user, scripted_model, redis_layer
):
    owner, other = redis_layer(), redis_layer()
    assert owner.remote and other.remote
    scripted_model.push_text(" ".join(f"w{i}" for i in range(40)), chunk_delay=0.05)
    live = owner.launch(await prepare(agent, user, "many words"))
    await asyncio.wrap_future(live.joined)
    while len(live.events) < 4:
        await asyncio.sleep(0.01)
    # The other process has never seen the run: it asks the owner for everything after index 1.
    stream = await other.subscribe(live.run_id, user=user, after_event_index=1)
    got = []
    async for event in stream:
        got.append(event)
        if len(got) == 5:
            assert await other.cancel(live.run_id, user=user) == "cancelling"
    assert [e["event_index"] for e in got] == list(range(2, 2 + len(got)))
    assert got[-1]["event"] == "RunCancelled"
    assert got == [e.to_dict() for e in live.events[2:]]
    run = await Run.objects.aget(pk=live.run_id)
    assert run.status == "cancelled" and run.output.startswith("w0 w1 w2")
    # A queued message in the same session, sent to the other process, waited for the owner's run.
    assert await other.cancel(live.run_id, user=user) == "cancelled"


async def test_queue_policy_waits_for_a_run_in_another_process(agent, user, scripted_model, redis_layer):
    owner, other = redis_layer(), redis_layer()
    scripted_model.push_text("first answer takes a while", chunk_delay=0.05)
    live = owner.launch(await prepare(agent, user, "first"))
    await asyncio.wrap_future(live.joined)
    handle = await asyncio.wait_for(
        other.prepare_with(
            run_prepare, agent_id=agent.slug, user=user, message="second", session_id=live.handle.session_id
        ),
        10,
    )
    assert live.done
    assert [m["content"] for m in handle.history] == ["first", "first answer takes a while"]


async def test_a_reader_that_attaches_before_the_run_started_skips_what_it_said_it_has():
    """A reconnect with Last-Event-ID: 0 that reaches the run before its first event (a race the
    full suite hit under load) must not get event 0 again from the live queue."""
    import types
    import uuid

    from agents_app import events as ev
    from agents_app.runtime import LiveRun

    handle = types.SimpleNamespace(run_id=uuid.uuid4(), user_id=1)
    live = LiveRun(handle=handle, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    ids = {"run_id": str(handle.run_id), "session_id": "s", "agent_id": "a"}
    reader = live.follow(0)
    first = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0)  # attached, with nothing in the backlog
    live._append(ev.RunStarted(event_index=0, **ids))
    live._append(ev.RunContent(event_index=1, content="hi", **ids))
    live._append(ev.RunCompleted(event_index=2, **ids))
    rest = [await first] + [event async for event in reader]
    assert [e.event_index for e in rest] == [1, 2]
