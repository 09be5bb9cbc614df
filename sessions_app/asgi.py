"""Django's HTTP handler without a new thread per request: `pooled_sync_threads(app)`.

Django's ASGIHandler enters a fresh `ThreadSensitiveContext()` for every request, and asgiref
starts a new single-thread executor for each: every request starts and stops a thread (its
`request_started` and `request_finished` signals run there even when the view is async), and,
database connections being per thread, a sync view opens a new connection per request whatever
CONN_MAX_AGE says. Measured on the run endpoint, that thread costs about a quarter of the server's
CPU per run (docs/benchmarks.md).

This wrapper enters the request's thread-sensitive context first, with an executor that borrows a
long-lived thread from a pool at its first use and gives it back when the request ends. Django's
own context then becomes a no-op (asgiref lets an outer context with an executor win). What
Django promises is kept: all thread-sensitive work of one request runs on one thread, one call at
a time, and a request's sync code never shares its thread with another request's while it runs.
What changes: threads are reused, so a sync view's database connection lives as CONN_MAX_AGE says
(checked by `close_old_connections` on `request_started`/`request_finished`, as under WSGI).

Work that outlives its request (a run whose client went away) must not make thread-sensitive calls
into the ended request's context: asgiref refuses them. `detached_context()` gives a task a copy of
the current context without the request's thread-sensitive context (agents_app.runtime uses it for
every run task); its thread-sensitive calls then go to asgiref's process-wide sync thread.

Use it in a site's asgi.py: `http_app = pooled_sync_threads(get_asgi_application())`.
"""

from __future__ import annotations

import contextvars
import gc
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from importlib import import_module
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]

# Idle threads kept for reuse; more are started when more requests run sync code at once, and
# those beyond this number stop when their request ends. Each kept thread that served a sync view
# keeps its database connection (CONN_MAX_AGE), so this also bounds the idle connections a process
# holds besides the engine's (DB_THREADS): docs/capacity.md.
IDLE_THREADS = 8


class _ThreadPool:
    """Long-lived single-thread executors, lent one per request."""

    def __init__(self, idle_max: int) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()
        self._idle_max = idle_max
        self._started = 0

    def borrow(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._started += 1
            number = self._started
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"django-sync-{number}")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self._idle_max:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


_pool = _ThreadPool(IDLE_THREADS)


class _LentThread(Executor):
    """One request's thread: borrowed from the pool at the first call, returned at `release`."""

    __slots__ = ("_executor",)

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._executor is None:
            self._executor = _pool.borrow()
        return self._executor.submit(fn, *args, **kwargs)

    def release(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # The request's calls have all returned (asgiref awaits each one), so the thread is idle.
            _pool.give_back(executor)


def pooled_sync_threads(app: ASGIApp) -> ASGIApp:
    """`app` (Django's ASGI handler) with each HTTP request's thread-sensitive work on a pooled
    long-lived thread instead of a new thread per request."""

    async def pooled(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        lent = _LentThread()
        try:
            async with ThreadSensitiveContext(executor=lent):
                await app(scope, receive, send)
        finally:
            lent.release()

    return pooled


def detached_context() -> contextvars.Context:
    """A copy of the current context outside any request's thread-sensitive context, for a task
    that may outlive the request (asyncio.create_task(coro, context=detached_context()))."""
    context = contextvars.copy_context()
    context.run(SyncToAsync.thread_sensitive_context.set, None)  # type: ignore[arg-type]
    return context


def freeze_startup_objects(*modules: str) -> int:
    """Import `modules` (what the first requests would import: the URLconf and the views behind it,
    the model providers), collect the garbage of start-up once, and move every object alive now out
    of the garbage collector's reach (`gc.freeze()`); the number of objects frozen.

    Why: a server process holds about 190,000 objects after start-up (modules, classes, functions)
    that live as long as it does. The collector's oldest generation is scanned whole, every one of
    those objects each time: 67 ms on the benchmark box, during which every run in the process
    waits. Frozen, they are no longer scanned; the runs' own objects are collected as before.
    Measured side by side at 32 clients (bench/ab.py, docs/benchmarks.md): p99 latency 0.63-0.73 of
    what it was, CPU per run 0.89-0.95.
    The cost: a reference cycle among those objects that later becomes garbage is never freed
    (start-up objects rarely do).
    Call it last in asgi.py, once the application is built."""
    for name in modules:
        import_module(name)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
