"""Summarize a py-spy "raw" (collapsed stacks) profile: where the server's CPU samples go.

    python bench/profile_summary.py bench/results/<stamp>-daphne-nonstream-8.txt

py-spy is asked for on-CPU samples only (no --idle), but its idle detection misses some waits
(an executor thread blocked on its queue, a condition variable); samples whose innermost frame
is such a wait are dropped too, and counted as "idle (dropped)". Percentages are shares of the
remaining, busy samples. "self" is the innermost Python frame (time in C code called from Python, such
as sqlite3 or orjson, counts for the Python function that called it); "inclusive" counts a
function once per sample wherever it is on the stack.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# First path component(s) -> a readable bucket for "self time by package".
_BUCKETS: list[tuple[str, str]] = [
    ("agents_app/", "our code (agents_app)"),
    ("sessions_app/", "our code (sessions_app)"),
    ("agentos_site/", "our code (agentos_site)"),
    ("telemetry_app/", "our code (telemetry_app)"),
    ("django/db/", "Django ORM + sqlite3 driver"),
    ("django/", "Django (request/response, middleware, other)"),
    ("rest_framework/", "DRF"),
    ("openai/", "openai SDK"),
    ("httpx/", "httpx/httpcore (model HTTP client)"),
    ("httpcore/", "httpx/httpcore (model HTTP client)"),
    ("httpx2/", "httpx/httpcore (model HTTP client)"),
    ("httpcore2/", "httpx/httpcore (model HTTP client)"),
    ("h11/", "httpx/httpcore (model HTTP client)"),
    ("anyio/", "anyio"),
    ("pydantic/", "pydantic"),
    ("pydantic_core/", "pydantic"),
    ("twisted/", "daphne/twisted (HTTP server)"),
    ("daphne/", "daphne/twisted (HTTP server)"),
    ("autobahn/", "daphne/twisted (HTTP server)"),
    ("txaio/", "daphne/twisted (HTTP server)"),
    ("uvicorn/", "uvicorn (HTTP server)"),
    ("channels/", "channels"),
    ("asgiref/", "asgiref (sync/async bridges)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("concurrent/", "threads / futures (stdlib)"),
    ("threading.py", "threads / futures (stdlib)"),
    ("queue.py", "threads / futures (stdlib)"),
    ("sqlite3/", "Django ORM + sqlite3 driver"),
    ("json/", "json (stdlib)"),
    ("logging/", "logging"),
    ("uuid.py", "uuid"),
    ("typing.py", "typing"),
]


# Innermost frames that are waits, not work (file:line as py-spy prints them, or a function name).
_IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py:81)",  # an executor thread waiting for work
    "Condition.wait (",
    "Event.wait (",
    "Thread._wait_for_tstate_lock (",
    "EpollSelector.select (",
)

# Curated "where does a run's time go" rows: label -> function names (inclusive, any frame).
HOTSPOTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "sync thread hop for auth + run_prepare (checks_and_prepare)",
        ("AsyncAPIView.dispatch.<locals>.checks_and_prepare",),
    ),
    ("  DRF token authentication (BearerOrTokenAuthentication)", ("BearerOrTokenAuthentication.authenticate",)),
    ("  run_prepare -> run_start (session, history, run + message)", ("run_start",)),
    ("    history read (session_history)", ("session_history",)),
    ("run_finish (update run, bulk_create messages)", ("run_finish",)),
    ("opening a new DB connection (BaseDatabaseWrapper.connect)", ("BaseDatabaseWrapper.connect",)),
    ("BEGIN (Atomic.__enter__)", ("Atomic.__enter__",)),
    ("COMMIT (BaseDatabaseWrapper.commit)", ("BaseDatabaseWrapper.commit",)),
    ("all SQL executed (CursorWrapper.execute/executemany)", ("CursorWrapper.execute", "CursorWrapper.executemany")),
    (
        "model call, whole (OpenAICompatibleProvider.complete/stream)",
        ("OpenAICompatibleProvider.complete", "OpenAICompatibleProvider.stream"),
    ),
    ("  openai request building (async_transform)", ("async_transform", "_async_transform_recursive")),
    (
        "  openai response parsing (_process_response / construct)",
        ("AsyncAPIClient._process_response", "AsyncAPIResponse.parse", "AsyncStream.__stream__"),
    ),
    ("  HTTP client send (httpx AsyncClient.send)", ("AsyncClient.send",)),
    ("thread hops: executor submit / thread start (asgiref, futures)", ("ThreadPoolExecutor.submit", "Thread.start")),
    (
        "Django ASGI handler (handle, process_request)",
        ("ASGIHandler.handle", "ASGIHandler.handle.<locals>.process_request"),
    ),
    ("  middleware chain (MiddlewareMixin.__acall__)", ("MiddlewareMixin.__acall__",)),
    ("  request_started/finished signals (close_old_connections)", ("Signal.asend", "close_old_connections")),
    ("  sending the response (ASGIHandler.send_response)", ("ASGIHandler.send_response",)),
    ("SSE framing (sse_frame)", ("sse_frame",)),
    (
        "HTTP server: daphne/twisted (HTTP parsing, writes)",
        ("WebRequest.process", "HTTPChannel.dataReceived", "Server.handle_reply", "WebRequest.handle_reply"),
    ),
    (
        "HTTP server: uvicorn (h11 protocol)",
        ("H11Protocol.data_received", "H11Protocol.handle_events", "RequestResponseCycle.send"),
    ),
]


def _parse_frame(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, ""
    return m.group("func"), m.group("file")


def _bucket(file: str) -> str:
    for prefix, name in _BUCKETS:
        if file.startswith(prefix) or f"/{prefix}" in file:
            return name
    head = file.split("/", 1)[0] if file else "?"
    return head or "?"


def summarize(path: str | Path, top: int = 25) -> dict[str, Any]:
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    hot: collections.Counter[str] = collections.Counter()
    hot_names = {name: label for label, names in HOTSPOTS for name in names}
    idle = 0
    thread_ids: set[str] = set()
    for raw in Path(path).read_text(errors="replace").splitlines():
        raw = raw.rstrip()
        if not raw:
            continue
        stack, _, count_text = raw.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            thread = frames[0]
            frames = frames[1:]
        if not frames:
            continue
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += count
            continue
        total += count
        thread_ids.add(thread)
        threads["MainThread (event loop)" if thread.endswith("MainThread") else "other threads (executors)"] += count
        parsed = [_parse_frame(f) for f in frames]
        for label in {hot_names[fn] for fn, _fl in parsed if fn in hot_names}:
            hot[label] += count
        func, file = parsed[-1]
        self_fn[f"{func} ({file})"] += count
        buckets[_bucket(file)] += count
        for name in {f"{fn} ({fl})" for fn, fl in parsed}:
            incl_fn[name] += count

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    ours = [
        (name, n) for name, n in incl_fn.most_common() if re.search(r"\((agents_app|sessions_app|agentos_site)/", name)
    ]
    return {
        "file": str(path),
        "samples": total,
        "idle_dropped": idle,
        "distinct_threads": len(thread_ids),
        "hotspots": [{"what": label, "pct": pct(hot[label])} for label, _names in HOTSPOTS],
        "threads": [{"thread": t, "pct": pct(n)} for t, n in threads.most_common()],
        "self_by_package": [{"package": b, "pct": pct(n)} for b, n in buckets.most_common()],
        "self_top": [{"function": f, "pct": pct(n)} for f, n in self_fn.most_common(top)],
        "inclusive_top": [{"function": f, "pct": pct(n)} for f, n in incl_fn.most_common(top + 15)],
        "inclusive_ours": [{"function": f, "pct": pct(n)} for f, n in ours[:top]],
    }


def to_markdown(summary: dict[str, Any], title: str = "", rows: int = 15) -> str:
    out = [
        f"#### {title or summary['file']}",
        "",
        f"{summary['samples']} busy samples ({summary['idle_dropped']} idle-wait samples dropped), "
        f"{summary['distinct_threads']} distinct threads; file `{summary['file']}`",
        "",
        "| where the time goes (inclusive) | % |",
        "|---|---:|",
    ]
    out.extend(f"| {h['what']} | {h['pct']} |" for h in summary["hotspots"])
    out += ["", "| threads | % |"]
    out.append("|---|---:|")
    out.extend(f"| {t['thread']} | {t['pct']} |" for t in summary["threads"][:6])
    out += ["", "| self time by package | % |", "|---|---:|"]
    out.extend(f"| {b['package']} | {b['pct']} |" for b in summary["self_by_package"][:rows])
    out += ["", "| top functions, self | % |", "|---|---:|"]
    out.extend(f"| `{f['function']}` | {f['pct']} |" for f in summary["self_top"][:rows])
    out += ["", "| our functions, inclusive | % |", "|---|---:|"]
    out.extend(f"| `{f['function']}` | {f['pct']} |" for f in summary["inclusive_ours"][:rows])
    out += ["", "| all functions, inclusive | % |", "|---|---:|"]
    out.extend(f"| `{f['function']}` | {f['pct']} |" for f in summary["inclusive_top"][: rows + 10])
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarize a py-spy raw profile.")
    parser.add_argument("profile")
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    print(to_markdown(summarize(args.profile), rows=args.rows))


if __name__ == "__main__":
    main()
