"""What an idle chat websocket keeps for as long as it stays open (docs/benchmarks.md#idle-websockets):
no task besides its own; with an API token, nothing of the session (the token decides who it is,
so a session cookie that came along is never read); with a session cookie, neither the session nor
the cookies once its user is known."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from sessions_app.models import Run
from tests.test_websocket import ORIGIN, _application, connect, until_terminal

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_idle_socket_keeps_one_task_its_own(offline_agent, token):
    first = await connect("offline", token=token)  # one-off start-up tasks, if any, are counted here
    await asyncio.sleep(0.05)
    before = len(asyncio.all_tasks())
    more = [await connect("offline", token=token) for _ in range(3)]
    await asyncio.sleep(0.05)
    # One per socket: the application's own (the communicator's). Channels' default dispatch loop
    # would add a second one, pending on the next receive, for as long as the socket is open.
    assert len(asyncio.all_tasks()) - before == 3
    # And they still do everything: a run over one of them.
    await more[-1].send_json_to({"type": "run", "message": "hello"})
    assert (await until_terminal(more[-1]))[-1]["event"] == "RunCompleted"
    for comm in [first, *more]:
        await comm.disconnect()


async def test_a_token_socket_never_reads_the_session_cookie(offline_agent, token, other_user, monkeypatch):
    client = Client()
    await sync_to_async(client.force_login)(other_user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    loads: list[Any] = []
    real_load = SessionStore.load
    monkeypatch.setattr(SessionStore, "load", lambda self: loads.append(self.session_key) or real_load(self))

    # With a token: the token's user (alice), the session (mallory's) not even loaded.
    comm = await connect("offline", token=token, headers=[ORIGIN, cookie])
    await comm.send_json_to({"type": "run", "message": "who am I?"})
    assert (await until_terminal(comm))[-1]["event"] == "RunCompleted"
    await comm.disconnect()
    assert loads == []
    assert [r.user.username async for r in Run.objects.select_related("user")] == ["alice"]

    # A wrong token is still refused, cookie or not; without a token the cookie authenticates.
    bad = WebsocketCommunicator(
        _application(), "/ws/agents/offline/", headers=[ORIGIN, cookie], subprotocols=["agentos", "token.nope"]
    )
    assert await bad.connect(timeout=5) == (False, 4401)
    assert loads == []
    comm = await connect("offline", headers=[ORIGIN, cookie])
    assert loads  # the session stack, for browsers
    await comm.disconnect()


async def test_a_session_socket_keeps_neither_the_session_nor_its_cookies(offline_agent, user, monkeypatch):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    stores: list[weakref.ref[SessionStore]] = []
    real_init = SessionStore.__init__

    def tracked_init(self: SessionStore, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        stores.append(weakref.ref(self))

    monkeypatch.setattr(SessionStore, "__init__", tracked_init)
    comm = await connect("offline", headers=[ORIGIN, cookie])
    gc.collect()
    assert stores and all(ref() is None for ref in stores)  # read once to find the user, then let go
    await comm.send_json_to({"type": "run", "message": "hello"})
    assert (await until_terminal(comm))[-1]["event"] == "RunCompleted"
    await comm.disconnect()
    assert [r.user_id async for r in Run.objects.all()] == [user.pk]


async def test_a_session_whose_password_changed_is_refused(offline_agent, user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    user.set_password("a new one")
    await user.asave()
    comm = WebsocketCommunicator(_application(), "/ws/agents/offline/", headers=[ORIGIN, cookie])
    assert await comm.connect(timeout=5) == (False, 4401)
