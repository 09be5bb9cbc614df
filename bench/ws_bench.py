"""Websocket chat figures, against a real server process (daphne by default, or uvicorn):

1. Streaming latency: the time from the model's first token leaving the (scripted) model server
   to the client's first `RunContent` frame, p50/p99, over the websocket and, for comparison, over
   SSE (the REST streaming endpoint). The model server runs in this process, so its "first token
   written" timestamp and the client's "first RunContent received" share one clock.
   With `--remote` (needs Redis): two server processes; the run starts on one and the client
   follows it through the other (resume with after_event_index=-1), i.e. the cross-process path.
2. Memory per idle open websocket: the server's RSS before and after opening N authenticated,
   idle connections, divided by N, and so how many fit in a GiB. The client offers
   permessage-deflate as browsers do, answers the server's pings, and is a bare asyncio protocol
   per socket (websockets' sans-I/O client: no task per connection), so that opening thousands of
   them does not starve the server of the 2 cores. `--tracemalloc` also prints where the server's
   Python allocations grew (a tracemalloc snapshot diff taken in the server process).

    .venv/bin/python bench/ws_bench.py [--runs 200] [--idle 1000] [--redis] [--remote]
    .venv/bin/python bench/ws_bench.py --server uvicorn --ws websockets-sansio --runs 0 --idle 5000 \
        [--server-args '--ws-per-message-deflate false'] [--app site|bare|consumer]

`--server uvicorn` runs `uvicorn agentos_site.asgi:application --lifespan off --no-access-log`
(docs/deployment.md's command) plus `--ws` and `--server-args`; `--server production` runs the
web command of docs/deployment.md as it stands. `--ws wsproto` needs wsproto importable (not in
requirements.txt: `pip install --target /tmp/wsproto wsproto` and PYTHONPATH=/tmp/wsproto).
`--app bare|consumer` (idle websockets only) serves bench/ws_idle_apps.py instead of the site, to
see what the server alone and Channels alone cost per socket.

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
import shlex
import signal
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

    async def _chat(self, body_bytes: bytes, writer: Any, keep_alive: bool, *rest: Any) -> bool:
        return await super()._chat(body_bytes, _TimingWriter(writer, self.first_token_at), keep_alive, *rest)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<44} n={len(ms):<4} p50={_pct(ms, 0.5):6.2f} ms  p99={_pct(ms, 0.99):6.2f} ms  "
        f"mean={statistics.fmean(ms):6.2f} ms  max={max(ms):6.2f} ms"
    )


def _documented_command() -> list[str]:
    """docs/deployment.md's production web command (between the `web-command` markers)."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    block = re.search(r"<!-- web-command -->\n```\n(.+?)\n```\n<!-- /web-command -->", doc, re.S)
    if block is None:
        raise RuntimeError("docs/deployment.md has no web-command block")
    argv = shlex.split(block.group(1).replace("\\\n", " "))  # with its line continuations
    argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
    return argv


def server_command(args: argparse.Namespace, app: str, port: int) -> list[str]:
    """The server process to start for `args.server` on `port`."""
    if args.server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *shlex.split(args.server_args), app]
    if args.server == "production":
        argv = _documented_command()
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("agentos_site.asgi:application")] = app
        return [*argv, *shlex.split(args.server_args)]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
        "--ws",
        args.ws,
        *shlex.split(args.server_args),
    ]


# Tracing starts at the first signal (tracing the imports would take the server a minute to start):
# SIGUSR1 starts it and writes a snapshot, SIGUSR2 writes another.
_TRACED_SERVER = """
import os, runpy, signal, sys, tracemalloc
def _dump(signum, frame):
    if not tracemalloc.is_tracing():
        tracemalloc.start(int(os.environ.get("WS_BENCH_TRACE_FRAMES", "12")))
    tracemalloc.take_snapshot().dump(os.environ["WS_BENCH_SNAPSHOT"] + "." + str(signum))
signal.signal(signal.SIGUSR1, _dump)
signal.signal(signal.SIGUSR2, _dump)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


class Site:
    """A temporary database, a user with a token, an agent on the timing model, N server processes."""

    def __init__(self, model: TimingModelServer, args: argparse.Namespace, *, processes: int, redis: bool) -> None:
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
        self.snapshot = f"{self.tmp.name}/tracemalloc"
        if args.tracemalloc:
            self.env["WS_BENCH_SNAPSHOT"] = self.snapshot
        out = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from django.core.management import call_command; call_command('migrate', verbosity=0); "
                "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
                "from agents_app.models import Agent, ModelConfig; "
                "u = User.objects.create_user('bench'); "
                "from django.test import Client; c = Client(); c.force_login(u); print(c.cookies['sessionid'].value); "
                "print(Token.objects.create(user=u).key); "
                f"m = ModelConfig.objects.create(name='timing', provider='openai', base_url='{model.base_url}', "
                "model_id='m', max_retries=0); Agent.objects.create(slug='bench', name='Bench', model=m, history_runs=0)",
            ],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.session_id, self.token = out.strip().splitlines()[-2:]
        self.ports = [_free_port() for _ in range(processes)]
        app = "agentos_site.asgi:application" if args.app == "site" else f"bench.ws_idle_apps:{args.app}"
        self.commands = [server_command(args, app, port) for port in self.ports]
        if args.tracemalloc:
            for command in self.commands:
                # python -c <tracer> -m-like: run the server's module (daphne / uvicorn) under tracemalloc.
                module = "daphne" if args.server == "daphne" else "uvicorn"
                start = command.index(module) + 1 if module in command else 1
                command[:start] = [sys.executable, "-c", _TRACED_SERVER, module]
        self.procs = [
            subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for command in self.commands
        ]
        try:
            for proc, port in zip(self.procs, self.ports, strict=True):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        httpx.get(f"http://127.0.0.1:{port}/api/agents/", timeout=1)
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise RuntimeError(f"the server did not start: {shlex.join(self.commands[0])}") from None
                        time.sleep(0.1)
        except BaseException:
            self.close()
            raise

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


class _IdleClient(asyncio.Protocol):
    """One idle websocket, as cheap as a client can be: websockets' sans-I/O protocol on a bare
    asyncio transport (no reader task, no keepalive task). It offers permessage-deflate as browsers
    do, answers the server's pings, and keeps text frames for whoever asks."""

    def __init__(self, url: str, subprotocols: list[str], deflate: bool, cookie: str | None = None) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        # None, not []: an empty list would send an empty Sec-WebSocket-Extensions header.
        extensions = [ClientPerMessageDeflateFactory(compress_settings={"memLevel": 5})] if deflate else None
        self.conn = ClientProtocol(parse_uri(url), subprotocols=subprotocols, extensions=extensions, max_size=None)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.cookie = cookie

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.conn.connect()
        if self.cookie:
            request.headers["Cookie"] = self.cookie
        self.conn.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if isinstance(event, Response) and not self.opened.done():
                if self.conn.handshake_exc is not None:
                    self.opened.set_exception(self.conn.handshake_exc)
                else:
                    self.opened.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.frames.put_nowait(bytes(event.data).decode())
        self._flush()  # pongs, close replies

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(data))

    async def send(self, text: str) -> None:
        self.conn.send_text(text.encode())
        self._flush()

    async def recv(self) -> str:
        return await asyncio.wait_for(self.frames.get(), 30)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _idle_connect(site: Site, deflate: bool, session: bool = False) -> _IdleClient:
    """A token in the subprotocols, or (`session`) the session cookie of a logged-in browser."""
    loop = asyncio.get_running_loop()
    if session:
        protocols, cookie = ["agentos"], f"sessionid={site.session_id}"
    else:
        protocols, cookie = ["agentos", f"token.{site.token}"], None
    _, client = await loop.create_connection(
        lambda: _IdleClient(site.ws_url(), protocols, deflate, cookie), "127.0.0.1", site.ports[0]
    )
    await asyncio.wait_for(client.opened, 30)
    return client


def _snapshot(site: Site, signum: int) -> Any:
    import tracemalloc

    path = Path(f"{site.snapshot}.{signum}")
    path.unlink(missing_ok=True)
    site.procs[0].send_signal(signum)
    deadline = time.monotonic() + 60
    size = -1
    while True:  # written once its size stops changing
        time.sleep(0.5)
        if path.exists() and path.stat().st_size == size and size > 0:
            return tracemalloc.Snapshot.load(str(path))
        size = path.stat().st_size if path.exists() else -1
        if time.monotonic() > deadline:
            raise RuntimeError("the server wrote no tracemalloc snapshot")


def _where(frame: Any) -> str:
    return f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"


def _print_growth(before: Any, after: Any, count: int, top: int = int(os.environ.get("WS_BENCH_TOP", "30"))) -> None:
    """What the server's Python allocations grew by, per connection: by the line that allocated
    (innermost frame outside asyncio and the standard library's plumbing), with its callers."""
    diff = after.compare_to(before, "traceback")
    total = sum(stat.size_diff for stat in diff)
    print(f"\ntracemalloc: Python allocations grew {total / 1024 / count:.1f} KiB per connection; largest:")
    grouped: dict[str, list[Any]] = {}
    for stat in diff:
        frames = list(reversed(stat.traceback))  # most recent first
        ours = [f for f in frames if "/asyncio/" not in f.filename] or frames
        key = " <- ".join(_where(f) for f in ours[:3])
        entry = grouped.setdefault(key, [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    for key, (size, blocks) in sorted(grouped.items(), key=lambda item: -item[1][0])[:top]:
        print(f"  {size / count:7.0f} B/conn {blocks / count:5.1f} blocks  {key}")
    by_package: dict[str, int] = {}
    for stat in diff:
        by_package[_package(stat.traceback)] = by_package.get(_package(stat.traceback), 0) + stat.size_diff
    print("By package (the innermost frame that is not the standard library's):")
    for package, size in sorted(by_package.items(), key=lambda item: -item[1]):
        if abs(size) / count >= 50:
            print(f"  {size / count:7.0f} B/conn  {package}")


def _package(traceback: Any) -> str:
    for frame in reversed(traceback):  # most recent first
        name = frame.filename
        if "site-packages/" in name:
            return name.split("site-packages/")[1].split("/")[0]
        if name.startswith(str(ROOT)):
            return Path(name).relative_to(ROOT).parts[0]
    return "standard library"


async def bench_idle(
    site: Site, count: int, *, deflate: bool, trace: bool, session: bool = False
) -> tuple[int, int, float]:
    pid = site.procs[0].pid
    # A few connections first, so one-off costs (imports, pools, the first consumer) are not counted.
    warm = [await _idle_connect(site, deflate, session) for _ in range(20)]
    await asyncio.sleep(1.0)
    if trace:
        first = await asyncio.to_thread(_snapshot, site, signal.SIGUSR1)
    before = _rss_kib(pid)
    sockets: list[_IdleClient] = []
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        sockets += await asyncio.gather(*(_idle_connect(site, deflate, session) for _ in batch))
    await asyncio.sleep(2.0)
    after = _rss_kib(pid)
    if trace:
        _print_growth(first, await asyncio.to_thread(_snapshot, site, signal.SIGUSR2), count)
    if site_app_is_real(site):
        # Still alive and serving: one run over the last connection.
        await sockets[-1].send(json.dumps({"type": "run", "message": "still there?"}))
        await _until_terminal(sockets[-1])
    for ws in [*sockets, *warm]:
        with contextlib.suppress(Exception):
            await ws.close()
    return before, after, (after - before) / count


def site_app_is_real(site: Site) -> bool:
    return "agentos_site.asgi:application" in site.commands[0]


async def main_async(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # This process holds the client ends, the server (which inherits the limit) the other ends.
    wanted = args.idle + 1024
    if wanted > hard:
        sys.exit(f"ulimit -n: the hard limit is {hard}, --idle {args.idle} needs {wanted} (raise it, or fewer sockets)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    model = TimingModelServer().start()
    layer = "Redis channel layer" if args.redis or args.remote else "in-memory channel layer"
    server = args.server + (f" --ws {args.ws}" if args.server == "uvicorn" else "")
    if args.server_args:
        server += f" {args.server_args}"
    print(
        f"ws_bench: {server}, app {args.app}, SQLite, {layer}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs"
    )
    site = Site(model, args, processes=2 if args.remote else 1, redis=args.redis or args.remote)
    try:
        if args.runs and args.app == "site":
            print("\nModel's first token written -> client's first RunContent frame received")
            pid = site.procs[0].pid
            cpu = _cpu_seconds(pid)
            print(_summary("websocket", await bench_ws(site, model, args.runs)))
            cpu, ws_cpu = _cpu_seconds(pid), _cpu_seconds(pid) - cpu
            print(_summary("SSE (POST /api/agents/{id}/runs, stream)", await bench_sse(site, model, args.runs)))
            sse_cpu = _cpu_seconds(pid) - cpu
            runs = args.runs + 5
            print(f"server CPU per run: websocket {ws_cpu / runs * 1000:.1f} ms, SSE {sse_cpu / runs * 1000:.1f} ms")
            if args.remote:
                near, far = await bench_remote(site, model, args.runs)
                print(_summary("websocket, same process as the run", near))
                print(_summary("websocket, other process (resume, via Redis)", far))
        if args.idle:
            before, after, per = await bench_idle(
                site, args.idle, deflate=not args.no_deflate, trace=args.tracemalloc, session=args.auth == "session"
            )
            offer = "no permessage-deflate offered" if args.no_deflate else "permessage-deflate offered"
            how = "a session cookie" if args.auth == "session" else "an API token"
            print(f"\nIdle authenticated websockets: {args.idle} (with {how}; {offer})")
            print(f"server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: {per:.1f} KiB per idle connection")
            print(f"= {1024 * 1024 / per:,.0f} idle websockets per GiB of server RSS" if per > 0 else "")
    finally:
        site.close()
        model.stop()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="measured runs per transport (0: none)")
    parser.add_argument("--idle", type=int, default=1000, help="idle websockets to open (0: none)")
    parser.add_argument("--redis", action="store_true", help="use the Redis channel layer (REDIS_URL)")
    parser.add_argument("--remote", action="store_true", help="two server processes on Redis; follow across them")
    parser.add_argument(
        "--server",
        choices=["daphne", "uvicorn", "production"],
        default="daphne",
        help="production: docs/deployment.md's web command as it stands",
    )
    parser.add_argument(
        "--ws",
        choices=["auto", "websockets", "websockets-sansio", "wsproto"],
        default="auto",
        help="uvicorn's websocket implementation (--server uvicorn)",
    )
    parser.add_argument("--server-args", default="", help="more options for the server command, one string")
    parser.add_argument(
        "--app",
        choices=["site", "bare", "consumer"],
        default="site",
        help="bare/consumer: bench/ws_idle_apps.py instead of the site (idle websockets only)",
    )
    parser.add_argument(
        "--auth",
        choices=["token", "session"],
        default="token",
        help="idle sockets authenticate with an API token (subprotocol) or a browser's session cookie",
    )
    parser.add_argument("--no-deflate", action="store_true", help="the client does not offer permessage-deflate")
    parser.add_argument("--tracemalloc", action="store_true", help="also diff tracemalloc snapshots of the server")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
