"""Where the time to first content goes: one streamed run's timeline, in-process.

The site's ASGI application is called directly (no server, no client library) for a streamed run
against the scripted model server, with marks at each stage: Django's request signal, the view's
dispatch, the auth + start hop on the database thread, the launch, the model request, its first
chunk, and each body write of the response. The median of each mark over `--runs` runs (after a
warm-up) is printed, in milliseconds from the request's arrival, with the CPU per run of the
process (all threads) for streamed and non-streaming runs.

    .venv/bin/python bench/timeline.py [--runs 30]

A fresh SQLite database in a temporary directory; the scripted model server as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402

MARKS: dict[str, float] = {}


def mark(name: str) -> None:
    MARKS.setdefault(name, time.perf_counter())


def instrument() -> None:
    """Wrap the stages of a run with marks (the site's code is untouched on disk)."""
    from django.core import signals

    from agents_app import apis, runs
    from agents_app.engine import outcome
    from sessions_app import api_base

    signals.request_started.connect(lambda **kw: mark("Django request_started"), weak=False)
    dispatch = api_base.AsyncAPIView.dispatch

    async def timed_dispatch(self: Any, request: Any, *a: Any, **k: Any) -> Any:
        mark("view dispatch")
        return await dispatch(self, request, *a, **k)

    api_base.AsyncAPIView.dispatch = timed_dispatch  # type: ignore[method-assign]
    prepare = apis.RunApi.prepare_post

    def timed_prepare(self: Any, request: Any, **k: Any) -> Any:
        mark("auth done, start (database thread)")
        result = prepare(self, request, **k)
        mark("start stored (database thread)")
        return result

    apis.RunApi.prepare_post = timed_prepare  # type: ignore[method-assign]
    launch = runs.launch

    def timed_launch(*a: Any, **k: Any) -> Any:
        mark("launch (event loop)")
        return launch(*a, **k)

    runs.launch = timed_launch
    model_request = outcome.Execution._model_request

    async def timed_model_request(self: Any, *a: Any, **k: Any) -> Any:
        mark("model request")
        async for item in model_request(self, *a, **k):
            mark("first model chunk")
            yield item

    outcome.Execution._model_request = timed_model_request  # type: ignore[method-assign]


async def call(app: Any, token: str, stream: bool, writes: list[tuple[float, bytes]]) -> None:
    body = json.dumps({"message": "What is new today?", "stream": stream}).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        writes.append((time.perf_counter(), message.get("body", b"")))

    path = "/api/agents/bench/runs"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)


async def measure(app: Any, token: str, runs: int) -> None:
    for _ in range(20):  # warm-up: imports, caches, the model connection
        await call(app, token, True, [])
    timelines: dict[str, list[float]] = {}
    for _ in range(runs):
        MARKS.clear()
        writes: list[tuple[float, bytes]] = []
        t0 = time.perf_counter()
        await call(app, token, True, writes)
        first_content = next((t for t, b in writes if b"event: RunContent" in b), None)
        points = {**MARKS, "response start written": writes[0][0]}
        if first_content is not None:
            points["first content frame written"] = first_content
        points["last frame written"] = writes[-1][0]
        for name, at in points.items():
            timelines.setdefault(name, []).append((at - t0) * 1000)
    print(f"\nOne streamed run, in-process, median of {runs} (ms from the request's arrival):\n")
    print("| stage | ms |\n|---|--:|")
    for name, values in sorted(timelines.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"| {name} | {statistics.median(values):.2f} |")
    for stream in (True, False):
        started = time.process_time()
        for _ in range(runs * 3):
            await call(app, token, stream, [])
        cpu = (time.process_time() - started) / (runs * 3) * 1000
        print(f"\nCPU per {'streamed' if stream else 'non-streaming'} run, in-process: {cpu:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="agentos-timeline-"))
    procs = bench.Processes()
    try:
        env = bench.django_env(f"sqlite:///{tmp / 'timeline.sqlite3'}")
        _, port = bench.start_model_server(procs, env, tmp, 50)
        base_url = f"http://{bench.HOST}:{port}/v1"
        bench.step(["manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=180)
        setup = json.loads(bench.step([str(BENCH / "setup_db.py"), "--base-url", base_url], env, 60).splitlines()[-1])
        os.environ.update({k: v for k, v in env.items() if k.startswith(("DATABASE_", "DJANGO_"))})
        sys.path.insert(0, str(ROOT))
        from agentos_site.asgi import application

        instrument()
        asyncio.run(measure(application, setup["token"], args.runs))
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
