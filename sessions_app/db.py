"""Where the engine's database work runs when it is called from async code.

Under ASGI, Django gives each request a fresh thread-sensitive context: a new worker thread per
request and so, database connections being per thread, a new connection per request whatever
CONN_MAX_AGE says. The engine's few database hops per run (start, finish) instead run on a small
pool of long-lived threads that keep their connections, which also lets a run that outlives its
request (a client that disconnected) still be stored.

Called from inside `async_to_sync` (the sync `run_agent` wrapper, Django's test client, the
admin's try-it page), the work runs on the calling thread as usual, so it shares that thread's
connection and transaction.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.db import close_old_connections, connection

from sessions_app.conf import agentos_settings

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_local = threading.local()
_HYGIENE_SECONDS = 1.0


def _executor_get() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                threads = agentos_settings.DB_THREADS
                if threads is None:
                    threads = 1 if connection.vendor == "sqlite" else 4
                _executor = ThreadPoolExecutor(max_workers=max(1, int(threads)), thread_name_prefix="agentos-db")
    return _executor


def _with_connection_hygiene(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # What request_started/finished do for request threads: drop broken or expired connections.
    # At most once a second per thread, so a busy thread does not pay for it on every run.
    now = time.monotonic()
    if now - getattr(_local, "checked", 0.0) > _HYGIENE_SECONDS:
        close_old_connections()
        _local.checked = now
    return fn(*args, **kwargs)


def _inside_async_to_sync() -> bool:
    return getattr(AsyncToSync.executors, "current", None) is not None


async def db_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` (sync, database work) without blocking the event loop."""
    if _inside_async_to_sync():
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    return await sync_to_async(partial(_with_connection_hygiene, fn), thread_sensitive=False, executor=_executor_get())(
        *args, **kwargs
    )


def db_threads_close_connections(timeout: float = 5.0) -> None:
    """Close the database connections held by the engine's threads (at shutdown, or before a test
    database is dropped). Every thread takes one job, held at a barrier until all have theirs."""
    executor = _executor
    if executor is None:
        return
    from django.db import connections

    workers = executor._max_workers
    barrier = threading.Barrier(workers, timeout=timeout)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        connections.close_all()

    for future in [executor.submit(close) for _ in range(workers)]:
        future.result(timeout=timeout + 1)
