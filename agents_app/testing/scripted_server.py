"""A scripted, OpenAI-compatible HTTP server for tests and benchmarks.

Why it exists: the agent runtime must be exercised through the *real* ``openai``
client over a *real* socket, because that is where connection pooling, SSE
parsing, retries and timeouts actually happen. Mocking the client would hide
exactly the behaviour we want to test. A scripted server also gives benchmarks
a "ceiling": the fastest a model backend could possibly answer, so any time
measured above it is overhead of our own stack.

Design choices (all in service of being cheap per request):

* Pure stdlib ``asyncio`` streams, HTTP/1.1 keep-alive, ``Content-Length``
  request bodies only, and the bare minimum of header parsing.
* Streaming replies use ``Transfer-Encoding: chunked`` so the connection stays
  reusable; the ``[DONE]`` event and the terminating chunk are always written
  together, so clients that drain the body after ``[DONE]`` (the async
  ``openai`` client does, with a short deadline) never wait.
* Scripted replies live in a FIFO shared by streaming and non-streaming
  requests, so a test scripts *what* the model says, independently of *how*
  the code under test asks for it.
* The server runs its own event loop in a daemon thread, so synchronous tests,
  ``async`` tests and Django's sync/async views can all talk to it without
  sharing (or blocking) their event loop.

Run ``python -m agents_app.testing.scripted_server --words 50`` to serve the
default reply in the foreground for benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

__all__ = ["ScriptedModelServer", "main"]

DEFAULT_MODEL = "scripted-model"

# One piece per word, each carrying its leading whitespace; a trailing run of
# whitespace becomes its own piece so that "".join(pieces) == text exactly.
_WORD_PIECES = re.compile(r"\s*\S+|\s+\Z")
# Tool-call arguments are streamed in slices of this many characters, so that
# clients have to accumulate them the way they must with the real API.
_ARGUMENT_SLICE = 16

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})

_KIND_TEXT = "text"
_KIND_TOOLS = "tool_calls"
_KIND_ERROR = "error"
_KIND_BREAK = "break"


@dataclass(slots=True)
class _Reply:
    """One scripted answer; rendered as a completion or a stream on demand."""

    kind: str
    content: str | None = None  # None for text replies means "use default_reply"
    tool_calls: list[dict[str, str]] | None = None  # normalised: id, name, arguments
    delay: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    cached_tokens: int = 0  # reported as usage.prompt_tokens_details.cached_tokens


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_type(status: int) -> tuple[str, str | None]:
    """Map a status to the (type, code) pair the real API uses, roughly."""
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 404:
        return "invalid_request_error", "not_found"
    return "invalid_request_error", None


def _error_body(status: int, message: str) -> dict[str, Any]:
    err_type, code = _error_type(status)
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


def _count_words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Deterministic token estimate: one per message plus one per word."""
    total = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    for message in messages:
        total += 1
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += _count_words(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += _count_words(part["text"])
    return total


def _usage(
    body: dict[str, Any], content: str | None, tool_calls: list[dict[str, str]] | None, cached_tokens: int = 0
) -> dict[str, Any]:
    prompt = _estimate_prompt_tokens(body)
    completion = _count_words(content)
    for call in tool_calls or ():
        completion += 1 + _count_words(call["arguments"])
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": min(cached_tokens, prompt)}
    return usage


def _frame(event: str) -> bytes:
    """Encode one SSE event as one HTTP chunk."""
    data = f"data: {event}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


_DONE_AND_END = _frame("[DONE]") + b"0\r\n\r\n"


class ScriptedModelServer:
    """An OpenAI-compatible chat-completions server whose answers are scripted.

    Tests push replies (``push_text``, ``push_tool_calls``, ``push_error`` ...)
    which are consumed in FIFO order by ``/chat/completions`` requests, whether
    those requests stream or not. When the queue is empty, ``default_reply`` is
    used, so benchmarks can run without scripting anything.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_words: int | None = None,
        latency: float = 0.0,
        model: str = DEFAULT_MODEL,
    ) -> None:
        """Configure (but do not start) the server.

        ``port=0`` picks a free port, so parallel test runs never collide.
        ``default_words=N`` makes the default reply ``"word1 ... wordN"`` (for
        benchmarks that need a realistic answer size); otherwise it is ``"ok"``.
        ``latency`` seconds are added before every chat-completion reply, to
        simulate a model's thinking time.
        """
        self.host = host
        self.port = port
        self.latency = latency
        self.model = model
        self.requests: list[dict[str, Any]] = []
        # The headers of each recorded request (names lower-cased), parallel to ``requests``.
        self.request_headers: list[dict[str, str]] = []
        # Accepted connections since start/reset: lets tests assert keep-alive reuse.
        self.connections_opened = 0
        self.default_reply: Callable[[dict[str, Any]], str] = self._default_reply
        if default_words:
            self._default_text = " ".join(f"word{i}" for i in range(1, default_words + 1))
        else:
            self._default_text = "ok"
        self._queue: deque[_Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn_tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ API

    @property
    def base_url(self) -> str:
        """The URL to pass as ``base_url`` to ``openai.OpenAI``/``AsyncOpenAI``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def push_text(self, text: str, *, delay: float = 0.0, chunk_delay: float = 0.0, cached_tokens: int = 0) -> None:
        """Script a plain assistant answer.

        ``delay`` waits before the response starts (time to first byte);
        ``chunk_delay`` waits between stream chunks (ignored when not streaming);
        ``cached_tokens`` of the prompt are reported as read from the prompt cache.
        """
        self._push(_Reply(_KIND_TEXT, content=text, delay=delay, chunk_delay=chunk_delay, cached_tokens=cached_tokens))

    def push_tool_calls(
        self,
        calls: list[dict[str, Any]],
        *,
        content: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script an answer that calls tools.

        Each call is ``{"name": ..., "arguments": dict | str, "id": optional}``;
        dict arguments are JSON-encoded, missing ids get a deterministic
        ``call_<n>``.
        """
        normalised = []
        for call in calls:
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            call_id = call.get("id") or f"call_{next(self._call_ids)}"
            normalised.append({"id": str(call_id), "name": str(call["name"]), "arguments": arguments})
        self._push(_Reply(_KIND_TOOLS, content=content, tool_calls=normalised, delay=delay))

    def push_error(
        self,
        status: int,
        message: str = "scripted error",
        *,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests with an OpenAI-style error body.

        ``retry_after`` sets both ``retry-after`` and ``retry-after-ms`` so the
        client's retry logic can be tested without multi-second back-offs.
        """
        reply = _Reply(_KIND_ERROR, status=status, message=message, retry_after=retry_after)
        with self._lock:
            self._queue.extend(reply for _ in range(times))

    def push_json(self, obj: object, *, cached_tokens: int = 0) -> None:
        """Script an answer whose content is ``json.dumps(obj)`` (structured output)."""
        self.push_text(json.dumps(obj), cached_tokens=cached_tokens)

    def push_hang(self, seconds: float, *, text: str | None = None) -> None:
        """Sleep ``seconds`` before answering, to exercise client timeouts.

        The sleep is asynchronous, so other connections are served meanwhile.
        The eventual answer is ``text`` or the default reply.
        """
        self._push(_Reply(_KIND_TEXT, content=text, delay=seconds))

    def push_stream_break(self, text_before: str) -> None:
        """Send part of a response, then close the connection mid-body.

        Streaming requests get the role chunk and the deltas of
        ``text_before`` but no finish chunk, ``[DONE]`` or final HTTP chunk;
        non-streaming requests get a truncated body. Either way the client sees
        an incomplete message, as with a real network failure.
        """
        self._push(_Reply(_KIND_BREAK, content=text_before))

    def reset(self) -> None:
        """Forget scripted replies and recorded requests (cleared in place)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.connections_opened = 0

    @property
    def pending(self) -> int:
        """Number of scripted replies not yet consumed (useful in assertions)."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> ScriptedModelServer:
        """Start serving in a daemon thread; returns ``self`` once listening."""
        if self._thread is not None:
            raise RuntimeError("ScriptedModelServer is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except OSError as exc:  # e.g. port in use: re-raised by start()
                failure.append(exc)
            finally:
                ready.set()
            if self._server is None:
                loop.close()
                return
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name=f"scripted-model-server-{id(self):x}", daemon=True)
        self._loop = loop
        self._thread = thread
        thread.start()
        ready.wait()
        if self._server is None:
            self._loop = self._thread = None
            if failure:
                raise failure[0]
            raise RuntimeError("ScriptedModelServer failed to start")
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(timeout=5)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    def __enter__(self) -> Self:
        """Start the server if needed; stop it on exit."""
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # ------------------------------------------------------------- internals

    def _push(self, reply: _Reply) -> None:
        with self._lock:
            self._queue.append(reply)

    def _default_reply(self, _body: dict[str, Any]) -> str:
        return self._default_text

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle_connection,
            self.host,
            self.port,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._conn_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve_forever(self) -> None:
        """Foreground mode for the CLI: listen, announce the URL, serve."""
        await self._listen()
        # The CLI's single line of output: benchmark harnesses read the URL from it.
        sys.stdout.write(self.base_url + "\n")
        sys.stdout.flush()
        assert self._server is not None
        await self._server.serve_forever()

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_opened += 1
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        try:
            keep_alive = True
            while keep_alive:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                keep_alive = await self._handle_request(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            # Peer went away, or sent something unparseable (e.g. a bad
            # Content-Length): drop the connection like a real server would.
            return
        except asyncio.CancelledError:
            # Only stop() cancels these top-level tasks; ending quietly keeps
            # asyncio from logging the cancellation as a handler failure.
            return
        finally:
            if task is not None:
                self._conn_tasks.discard(task)
            writer.close()

    async def _handle_request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection may be reused."""
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._write_json(
                writer,
                400,
                _error_body(400, "malformed request line"),
                keep_alive=False,
            )
            return False
        keep_alive = version != "HTTP/1.0"
        length = 0
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.lower()
            if name:
                headers[name] = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                option = value.strip().lower()
                keep_alive = option != "close" and (keep_alive or option == "keep-alive")
            elif name == "transfer-encoding":
                body = _error_body(411, "chunked request bodies are not supported")
                self._write_json(writer, 411, body, keep_alive=False)
                return False
            elif name == "expect" and "100-continue" in value.lower():
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body_bytes = await reader.readexactly(length) if length else b""

        path = target.split("?", 1)[0].rstrip("/")
        if method == "POST" and path in _CHAT_PATHS:
            return await self._chat(body_bytes, writer, keep_alive, headers)
        if method == "GET" and path in _MODELS_PATHS:
            models = {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "scripted",
                    }
                ],
            }
            self._write_json(writer, 200, models, keep_alive=keep_alive)
            return keep_alive
        self._write_json(
            writer,
            404,
            _error_body(404, f"no route for {method} {path}"),
            keep_alive=keep_alive,
        )
        return keep_alive

    def _write_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        obj: object,
        *,
        keep_alive: bool,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        payload = json.dumps(obj).encode()
        writer.write(self._head(status, "application/json", keep_alive, len(payload), extra_headers) + payload)

    def _head(
        self,
        status: int,
        content_type: str,
        keep_alive: bool,
        length: int | None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        parts = [
            (
                f"HTTP/1.1 {status} {_reason(status)}\r\n"
                f"content-type: {content_type}\r\n"
                f"connection: {'keep-alive' if keep_alive else 'close'}\r\n"
                f"x-request-id: req_{next(self._ids)}\r\n"
            )
        ]
        if length is None:
            parts.append("transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
        else:
            parts.append(f"content-length: {length}\r\n")
        parts.extend(f"{name}: {value}\r\n" for name, value in extra_headers)
        parts.append("\r\n")
        return "".join(parts).encode("latin-1")

    async def _chat(
        self, body_bytes: bytes, writer: asyncio.StreamWriter, keep_alive: bool, request_headers: dict[str, str]
    ) -> bool:
        try:
            body = json.loads(body_bytes)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._write_json(
                writer,
                400,
                _error_body(400, "request body must be a JSON object"),
                keep_alive=keep_alive,
            )
            return keep_alive
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(request_headers)
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            reply = _Reply(_KIND_TEXT)

        delay = self.latency + reply.delay
        if delay > 0:
            await asyncio.sleep(delay)
            if writer.is_closing():
                return False

        if reply.kind == _KIND_ERROR:
            headers: list[tuple[str, str]] = []
            if reply.retry_after is not None:
                headers.append(("retry-after", f"{reply.retry_after:g}"))
                headers.append(("retry-after-ms", str(round(reply.retry_after * 1000))))
            error = _error_body(reply.status, reply.message)
            self._write_json(
                writer,
                reply.status,
                error,
                keep_alive=keep_alive,
                extra_headers=headers,
            )
            return keep_alive

        content = reply.content
        if content is None and reply.kind != _KIND_TOOLS:
            content = self.default_reply(body)
        model = body.get("model")
        answer = _Answer(
            completion_id=f"chatcmpl-{next(self._ids):010d}",
            created=int(time.time()),
            model=model if isinstance(model, str) and model else self.model,
            body=body,
            content=content,
            tool_calls=reply.tool_calls,
            cached_tokens=reply.cached_tokens,
        )
        streaming = body.get("stream") is True

        if reply.kind == _KIND_BREAK:
            if streaming:
                head = self._head(200, "text/event-stream", True, None)
                writer.write(head + b"".join(answer.frames(finished=False)))
            else:
                payload = json.dumps(answer.completion()).encode()
                head = self._head(200, "application/json", True, len(payload))
                writer.write(head + payload[: len(payload) // 2])
            await writer.drain()
            return False  # the caller closes the socket with the body incomplete

        if not streaming:
            self._write_json(writer, 200, answer.completion(), keep_alive=keep_alive)
            return keep_alive

        frames = answer.frames(finished=True)
        head = self._head(200, "text/event-stream", keep_alive, None)
        if reply.chunk_delay <= 0:
            writer.write(head + b"".join(frames))
            return keep_alive
        writer.write(head + frames[0])
        await writer.drain()
        for frame in frames[1:]:
            await asyncio.sleep(reply.chunk_delay)
            if writer.is_closing():
                return False
            writer.write(frame)
            await writer.drain()
        return keep_alive


@dataclass(slots=True)
class _Answer:
    """A reply bound to one request; renders as a completion or as SSE frames."""

    completion_id: str
    created: int
    model: str
    body: dict[str, Any]
    content: str | None
    tool_calls: list[dict[str, str]] | None
    cached_tokens: int = 0

    def completion(self) -> dict[str, Any]:
        """Build the non-streaming ``chat.completion`` object."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.content,
            "refusal": None,
            "tool_calls": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in self.tool_calls
            ]
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.tool_calls else "stop",
                }
            ],
            "usage": _usage(self.body, self.content, self.tool_calls, self.cached_tokens),
        }

    def frames(self, *, finished: bool) -> list[bytes]:
        """Render as SSE chunk frames, ending with ``[DONE]`` if finished.

        Chunks are assembled from pre-built string halves so that only the
        variable part (a word, an argument slice) goes through ``json.dumps``.
        """
        stream_options = self.body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        envelope = (
            f'{{"id":{json.dumps(self.completion_id)},'
            f'"object":"chat.completion.chunk","created":{self.created},'
            f'"model":{json.dumps(self.model)},"system_fingerprint":null,"choices":'
        )
        prefix = envelope + '[{"index":0,"delta":'
        usage_tail = ',"usage":null}' if include_usage else "}"
        open_suffix = ',"logprobs":null,"finish_reason":null}]' + usage_tail

        first = "null" if self.content is None else '""'
        events = [f'{prefix}{{"role":"assistant","content":{first}}}{open_suffix}']
        if self.content:
            events.extend(
                prefix + '{"content":' + json.dumps(piece) + "}" + open_suffix
                for piece in _WORD_PIECES.findall(self.content)
            )
        for index, call in enumerate(self.tool_calls or ()):
            header = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            events.append(f'{prefix}{{"tool_calls":[{json.dumps(header)}]}}{open_suffix}')
            arguments = call["arguments"]
            for start in range(0, len(arguments), _ARGUMENT_SLICE):
                fragment = json.dumps(arguments[start : start + _ARGUMENT_SLICE])
                delta = f'{{"index":{index},"function":{{"arguments":{fragment}}}}}'
                events.append(f'{prefix}{{"tool_calls":[{delta}]}}{open_suffix}')
        frames = [_frame(event) for event in events]
        if not finished:
            return frames

        finish = "tool_calls" if self.tool_calls else "stop"
        frames.append(_frame(f'{prefix}{{}},"logprobs":null,"finish_reason":"{finish}"}}]{usage_tail}'))
        if include_usage:
            usage = json.dumps(_usage(self.body, self.content, self.tool_calls, self.cached_tokens))
            frames.append(_frame(f'{envelope}[],"usage":{usage}}}'))
        # [DONE] and the terminating chunk always travel together (module docstring).
        frames.append(_DONE_AND_END)
        return frames


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground, serving the default reply (benchmarks)."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--words",
        type=int,
        default=None,
        help="default reply length in words (else 'ok')",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every reply")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    server = ScriptedModelServer(
        args.host,
        args.port,
        default_words=args.words,
        latency=args.latency,
        model=args.model,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server._serve_forever())


if __name__ == "__main__":
    main()
