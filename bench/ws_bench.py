"""Websocket chat figures, against a real daphne server process:

1. Streaming latency: the time from the model's first token leaving the (scripted) model server
   to the client's first `RunContent` frame, p50/p99, over the websocket and, for comparison, over
   SSE (the REST streaming endpoint). The model server runs in this process, so its "first token
   written" timestamp and the client's "first RunContent received" share one clock.
   With `--remote` (needs Redis): two server processes; the run starts on one and the client
   follows it through the other (resume with after_event_index=-1), i.e. the cross-process path.
2. Memory per idle open websocket: the server's RSS before and after opening N authenticated,
   idle connections, divided by N.

    .venv/bin/python bench/ws_bench.py [--runs 200] [--idle 1000] [--redis] [--remote]

Each run starts a fresh SQLite database in a temporary directory; nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402

_FIRST_TOKEN = re.compile(rb'"delta":\{"content":"[^"]')


class _TimingWriter:
    """Wraps the model server's stream writer: notes when the first content token is written."""

    def __init__(self, writer: Any, marks: list[float]) -> None:
        self._writer = writer
        self._marks = marks
        self._seen = False

    def write(self, data: bytes) -> None:
        if not self._seen and _FIRST_TOKEN.search(data):
            self._seen = True
            self._marks.append(time.perf_counter())
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class TimingModelServer(ScriptedModelServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_token_at: list[float] = []

    async def _chat(self, body_bytes: bytes, writer: Any, keep_alive: bool) -> bool:
        return await super()._chat(body_bytes, _TimingWriter(writer, self.first_token_at), keep_alive)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<44} n={len(ms):<4} p50={_pct(ms, 0.5):6.2f} ms  p99={_pct(ms, 0.99):6.2f} ms  "
        f"mean={statistics.fmean(ms):6.2f} ms  max={max(ms):6.2f} ms"
    )


class Site:
    """A temporary database, a user with a token, an agent on the timing model, N daphne processes."""

    def __init__(self, model: TimingModelServer, *, processes: int, redis: bool) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="ws-bench-")
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.tmp.name}/bench.sqlite3",
            "DJANGO_DEBUG": "false",
            "DJANGO_LOG_LEVEL": "ERROR",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.env.pop("REDIS_URL", None)
        if redis:
            self.env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        out = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from django.core.management import call_command; call_command('migrate', verbosity=0); "
                "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
                "from agents_app.models import Agent, ModelConfig; "
                "u = User.objects.create_user('bench'); print(Token.objects.create(user=u).key); "
                f"m = ModelConfig.objects.create(name='timing', provider='openai', base_url='{model.base_url}', "
                "model_id='m', max_retries=0); Agent.objects.create(slug='bench', name='Bench', model=m, history_runs=0)",
            ],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.token = out.strip().splitlines()[-1]
        self.ports = [_free_port() for _ in range(processes)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in self.ports
        ]
        for port in self.ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/api/agents/", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("daphne did not start") from None
                    time.sleep(0.1)

    def ws_url(self, which: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[which]}/ws/agents/bench/"

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.tmp.cleanup()


REPLY = "one two three four five six seven eight"


async def _connect(site: Site, which: int = 0) -> Any:
    from websockets.asyncio.client import connect

    return await connect(site.ws_url(which), subprotocols=["agentos", f"token.{site.token}"], max_size=None)


async def _until_terminal(ws: Any) -> None:
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("event") in {"RunCompleted", "RunError", "RunCancelled"}:
            return


async def bench_ws(site: Site, model: TimingModelServer, runs: int) -> list[float]:
    ws = await _connect(site)
    latencies = []
    for i in range(runs + 5):
        model.push_text(REPLY, delay=0.005, chunk_delay=0.001)
        before = len(model.first_token_at)
        await ws.send(json.dumps({"type": "run", "message": f"question {i}"}))
        first = None
        while True:
            frame = json.loads(await ws.recv())
            if frame["event"] == "RunContent" and first is None:
                first = time.perf_counter()
            if frame["event"] in {"RunCompleted", "RunError", "RunCancelled"}:
                break
        if i >= 5:  # warm-up
            latencies.append(first - model.first_token_at[before])
    await ws.close()
    return latencies


async def bench_sse(site: Site, model: TimingModelServer, runs: int) -> list[float]:
    url = f"http://127.0.0.1:{site.ports[0]}/api/agents/bench/runs"
    latencies = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {site.token}"}, timeout=10) as client:
        for i in range(runs + 5):
            model.push_text(REPLY, delay=0.005, chunk_delay=0.001)
            before = len(model.first_token_at)
            first = None
            async with client.stream("POST", url, json={"message": f"question {i}", "stream": True}) as response:
                async for line in response.aiter_lines():
                    if first is None and line == "event: RunContent":
                        first = time.perf_counter()
            if i >= 5:
                latencies.append(first - model.first_token_at[before])
    return latencies


async def bench_remote(site: Site, model: TimingModelServer, runs: int) -> tuple[list[float], list[float]]:
    """The run executes in process 0; one client reads it there, another through process 1."""
    local, remote = await _connect(site, 0), await _connect(site, 1)
    near, far = [], []
    for i in range(runs + 5):
        # The model waits long enough for the remote follower to have subscribed.
        model.push_text(REPLY, delay=0.05, chunk_delay=0.001)
        before = len(model.first_token_at)
        await local.send(json.dumps({"type": "run", "message": f"question {i}"}))
        started = json.loads(await local.recv())
        await remote.send(json.dumps({"type": "resume", "run_id": started["run_id"], "after_event_index": 0}))

        async def first_content(ws: Any) -> float:
            stamp = None
            while True:
                frame = json.loads(await ws.recv())
                if frame["event"] == "RunContent" and stamp is None:
                    stamp = time.perf_counter()
                if frame["event"] in {"RunCompleted", "RunError", "RunCancelled"}:
                    return stamp

        a, b = await asyncio.gather(first_content(local), first_content(remote))
        if i >= 5:
            near.append(a - model.first_token_at[before])
            far.append(b - model.first_token_at[before])
    await local.close()
    await remote.close()
    return near, far


async def bench_idle(site: Site, count: int) -> tuple[int, int, float]:
    pid = site.procs[0].pid
    # A few connections first, so one-off costs (imports, pools, the first consumer) are not counted.
    warm = [await _connect(site) for _ in range(20)]
    await asyncio.sleep(1.0)
    before = _rss_kib(pid)
    sockets = []
    for start in range(0, count, 100):
        sockets += await asyncio.gather(*(_connect(site) for _ in range(start, min(count, start + 100))))
    await asyncio.sleep(2.0)
    after = _rss_kib(pid)
    # Still alive and serving: one run over the last connection.
    await sockets[-1].send(json.dumps({"type": "run", "message": "still there?"}))
    await _until_terminal(sockets[-1])
    for ws in [*sockets, *warm]:
        with contextlib.suppress(Exception):
            await ws.close()
    return before, after, (after - before) / count


async def main_async(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.idle + 256)), hard))
    model = TimingModelServer().start()
    layer = "Redis channel layer" if args.redis or args.remote else "in-memory channel layer"
    print(f"ws_bench: daphne, SQLite, {layer}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    site = Site(model, processes=2 if args.remote else 1, redis=args.redis or args.remote)
    try:
        print("\nModel's first token written -> client's first RunContent frame received")
        print(_summary("websocket", await bench_ws(site, model, args.runs)))
        print(_summary("SSE (POST /api/agents/{id}/runs, stream)", await bench_sse(site, model, args.runs)))
        if args.remote:
            near, far = await bench_remote(site, model, args.runs)
            print(_summary("websocket, same process as the run", near))
            print(_summary("websocket, other process (resume, via Redis)", far))
        before, after, per = await bench_idle(site, args.idle)
        print(f"\nIdle authenticated websockets: {args.idle}")
        print(f"server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: {per:.1f} KiB per idle connection")
    finally:
        site.close()
        model.stop()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="measured runs per transport")
    parser.add_argument("--idle", type=int, default=1000, help="idle websockets to open")
    parser.add_argument("--redis", action="store_true", help="use the Redis channel layer (REDIS_URL)")
    parser.add_argument("--remote", action="store_true", help="two server processes on Redis; follow across them")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
