"""The load client: N concurrent keep-alive connections, each running one request after another.

Two transports share one interface (`await conn.request(...)` -> `Reply`):

* `RawConnection`: HTTP/1.1 over plain asyncio streams (Content-Length and chunked bodies,
  keep-alive, reconnect after an error). About ten times cheaper per request than httpx, which
  matters on a 2-core box where the client, the model server and our server share the CPU.
* `HttpxConnection`: `httpx.AsyncClient`, kept to show (in the client check) that the raw client
  is not the limit and how much CPU httpx itself would take from the server.

Each request records its latency and, for streams, the time until a marker (for our server
`event: RunContent`) first arrives: the time to first content frame (TTFC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

perf = time.perf_counter


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    marker_at: float | None  # perf_counter() when the marker first arrived


@dataclass(slots=True)
class Sample:
    latency: float
    ok: bool
    ttfc: float | None
    error: str = ""


class RawConnection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after an error or `Connection: close`."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.host_header = f"{host}:{port}"

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def aclose(self) -> None:
        self.close()

    async def request(self, path: str, headers: dict[str, str], body: bytes, marker: bytes | None) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._request(path, headers, body, marker)
        except BaseException:
            self.close()
            raise

    async def _request(self, path: str, headers: dict[str, str], body: bytes, marker: bytes | None) -> Reply:
        if self.writer is None:
            await self.connect()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        head = [f"POST {path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n"]
        head.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        head.append("\r\n")
        writer.write("".join(head).encode("latin-1") + body)

        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            if not line:
                continue
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = value.strip().lower() == b"close"

        marker_at: float | None = None
        if length is not None:
            data = await reader.readexactly(length)
            if marker is not None and marker in data:
                marker_at = perf()
        elif chunked:
            buf = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                    break
                chunk = await reader.readexactly(size + 2)
                start = len(buf)
                buf += chunk[:-2]
                if marker is not None and marker_at is None and marker in buf[max(0, start - len(marker)) :]:
                    marker_at = perf()
            data = bytes(buf)
        else:
            data = await reader.read()
            close = True
            if marker is not None and marker in data:
                marker_at = perf()
        if close:
            self.close()
        return Reply(status, data, marker_at)


class HttpxConnection:
    """The same interface on httpx.AsyncClient (one client and one pooled connection per load client)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            timeout=timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, path: str, headers: dict[str, str], body: bytes, marker: bytes | None) -> Reply:
        marker_at: float | None = None
        async with self.client.stream("POST", path, headers=headers, content=body) as response:
            buf = bytearray()
            async for chunk in response.aiter_raw():
                start = len(buf)
                buf += chunk
                if marker is not None and marker_at is None and marker in buf[max(0, start - len(marker)) :]:
                    marker_at = perf()
            return Reply(response.status_code, bytes(buf), marker_at)


TRANSPORTS: dict[str, type[RawConnection] | type[HttpxConnection]] = {"raw": RawConnection, "httpx": HttpxConnection}


@dataclass
class ScenarioResult:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


# A client loop: given its index, its connection and the deadline, appends samples until the deadline.
ClientLoop = Callable[[int, Any, float, list[Sample]], Awaitable[None]]


async def run_clients(
    *,
    host: str,
    port: int,
    clients: int,
    duration: float,
    loop_factory: ClientLoop,
    transport: str = "raw",
    timeout: float = 30.0,
    on_start: Callable[[], None] | None = None,
) -> ScenarioResult:
    """Open `clients` connections, then let every client loop run until `duration` has passed.

    Requests in flight at the deadline are finished and counted; `wall` runs from the start until
    the last one ends, so runs/s = len(samples) / wall.
    """
    cls = TRANSPORTS[transport]
    conns = [cls(host, port, timeout) for _ in range(clients)]
    await asyncio.gather(*(c.connect() for c in conns))
    samples: list[Sample] = []
    if on_start is not None:
        on_start()
    started = perf()
    deadline = started + duration
    try:
        await asyncio.gather(*(loop_factory(i, conns[i], deadline, samples) for i in range(clients)))
    finally:
        wall = perf() - started
        for c in conns:
            await c.aclose()
    result = ScenarioResult(samples=samples, wall=wall)
    for s in samples:
        if not s.ok:
            result.errors[s.error or "error"] = result.errors.get(s.error or "error", 0) + 1
    return result


# ---- Our server: POST /api/agents/<slug>/runs -------------------------------------------------

_SESSION_KEY = b'"session_id":"'


def _session_from(body: bytes) -> str | None:
    at = body.find(_SESSION_KEY)
    if at < 0:
        return None
    start = at + len(_SESSION_KEY)
    end = body.find(b'"', start)
    return body[start:end].decode() if end > start else None


def _session_loop(
    *,
    path: str,
    headers: dict[str, str],
    body: Callable[[str, str | None], bytes],
    marker: bytes | None,
    done: bytes,
    session_runs: int,
) -> ClientLoop:
    """Each client keeps one session (so the agent's history is in context) and starts a fresh
    one every `session_runs` runs. `body(message, session_id)` encodes a request; a run counts as
    ok only with HTTP 200 and `done` in the answer."""

    async def loop(index: int, conn: Any, deadline: float, samples: list[Sample]) -> None:
        session: str | None = None
        in_session = 0
        n = 0
        while perf() < deadline:
            n += 1
            payload = body(f"Client {index}, message {n}: what is new today?", session)
            t0 = perf()
            try:
                reply = await conn.request(path, headers, payload, marker)
            except Exception as exc:  # noqa: BLE001 - every failure is a counted error
                samples.append(Sample(perf() - t0, False, None, type(exc).__name__))
                continue
            latency = perf() - t0
            ok = reply.status == 200 and done in reply.body
            error = "" if ok else (f"HTTP {reply.status}" if reply.status != 200 else "run not completed")
            ttfc = reply.marker_at - t0 if reply.marker_at is not None else None
            samples.append(Sample(latency, ok, ttfc, error))
            if session is None:
                session = _session_from(reply.body)
                in_session = 0
            in_session += 1
            if in_session >= session_runs:
                session = None

    return loop


def agent_loop(*, agent: str, token: str, stream: bool, session_runs: int = 100) -> ClientLoop:
    """Our run API: a JSON body, a bearer token."""

    def body(message: str, session: str | None) -> bytes:
        payload: dict[str, Any] = {"message": message, "stream": stream}
        if session is not None:
            payload["session_id"] = session
        return orjson.dumps(payload)

    return _session_loop(
        path=f"/api/agents/{agent}/runs",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=body,
        marker=b"event: RunContent" if stream else None,
        done=b"event: RunCompleted" if stream else b'"status":"completed"',
        session_runs=session_runs,
    )


def agno_loop(*, agent: str, stream: bool, session_runs: int = 100) -> ClientLoop:
    """agno's AgentOS: its form body (`message`, `stream`, `session_id`), no authentication (agno's
    default), `"status":"COMPLETED"` when whole."""

    def body(message: str, session: str | None) -> bytes:
        fields = {"message": message, "stream": str(stream).lower()}
        if session is not None:
            fields["session_id"] = session
        return urlencode(fields).encode()

    return _session_loop(
        path=f"/agents/{agent}/runs",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
        marker=b"event: RunContent" if stream else None,
        done=b"event: RunCompleted" if stream else b'"status":"COMPLETED"',
        session_runs=session_runs,
    )


# ---- The ceiling: the scripted model server, called directly ----------------------------------

_HISTORY = [
    {"role": "user", "content": "Client 0, message 1: what is new today?"},
    {"role": "assistant", "content": " ".join(f"word{i}" for i in range(1, 51))},
] * 3


def model_loop(*, stream: bool) -> ClientLoop:
    """POST /v1/chat/completions with a context shaped like our runs' (system, 3 runs, message)."""
    path = "/v1/chat/completions"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    marker = b'"content":"word' if stream else None
    done = b"[DONE]" if stream else b'"finish_reason"'

    async def loop(index: int, conn: Any, deadline: float, samples: list[Sample]) -> None:
        n = 0
        while perf() < deadline:
            n += 1
            request: dict[str, Any] = {
                "model": "scripted-model",
                "messages": [
                    {"role": "system", "content": "You are a benchmark agent. Answer briefly."},
                    *_HISTORY,
                    {"role": "user", "content": f"Client {index}, message {n}: what is new today?"},
                ],
            }
            if stream:
                request["stream"] = True
                request["stream_options"] = {"include_usage": True}
            body = orjson.dumps(request)
            t0 = perf()
            try:
                reply = await conn.request(path, headers, body, marker)
            except Exception as exc:  # noqa: BLE001
                samples.append(Sample(perf() - t0, False, None, type(exc).__name__))
                continue
            ok = reply.status == 200 and done in reply.body
            ttfc = reply.marker_at - t0 if reply.marker_at is not None else None
            samples.append(Sample(perf() - t0, ok, ttfc, "" if ok else f"HTTP {reply.status}"))

    return loop
