"""Experiment, for the benchmark only: the site with all thread-sensitive sync work on ONE thread.

Django's ASGIHandler enters a fresh `ThreadSensitiveContext()` per request, so asgiref starts a
new single-thread executor for every request: a thread start and stop per request, and, because
Django's database connections are thread-local, a new SQLite connection per request (connect,
PRAGMAs, function registration) whatever CONN_MAX_AGE says; concurrent requests also become
concurrent SQLite writers that wait on each other's locks.

Entering an outer `ThreadSensitiveContext(executor=...)` first (asgiref >= 3.9 supports it)
makes Django's inner context a no-op, so authentication, run_prepare/run_finish and Django's
own sync bits all run on one long-lived thread that keeps its connection. Serve it with

    daphne -b 127.0.0.1 -p 8000 bench.asgi_shared_thread:application

(`python bench/run.py --servers daphne,daphne+shared` compares it with the plain site.)
Caveat, not handled here: a detached run that outlives its request (client gone) would then make
its final thread-sensitive call after the context exited, which asgiref refuses; the engine
would have to persist on its own executor.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

from agentos_site.asgi import application as site_application

_sync_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-sync")


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await site_application(scope, receive, send)
        return
    async with ThreadSensitiveContext(executor=_sync_executor):
        await site_application(scope, receive, send)
