"""Count the database queries of each run in one session of N runs, in-process.

Three paths, each in its own fresh session (after one warm-up run, so the per-process agent cache
and the model client are warm, as they are on a serving process):

* engine, non-streaming: `agents_app.runs.run_agent` (run_prepare + arun);
* engine, streaming: `astream_agent` drained to its last event;
Counts are what Django's CaptureQueriesContext (and assertNumQueries) sees, which on Django >= 4.2
includes BEGIN and COMMIT; "sql_only" leaves those out.

* HTTP, non-streaming: the whole request through Django's test client (middleware, DRF token
  authentication, the view and the engine), i.e. what one POST /api/agents/<id>/runs costs.

Needs the database prepared by bench/setup_db.py (DATABASE_URL) and the scripted model server it
points at. Writes JSON to --out (or stdout).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from agents_app.runs import astream_agent, run_agent  # noqa: E402


def _kind(sql: str) -> str:
    return sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"


_TX = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _measure(label: str, runs: int, one_run: Any) -> dict[str, Any]:
    """`one_run(session_id) -> session_id`, called `runs` times inside one session."""
    one_run(None)  # warm-up, in a session of its own
    session = None
    counts: list[int] = []
    sql_counts: list[int] = []
    captured: dict[int, list[str]] = {}
    started = time.perf_counter()
    for n in range(1, runs + 1):
        with CaptureQueriesContext(connection) as ctx:
            session = one_run(session)
        counts.append(len(ctx.captured_queries))
        sql_counts.append(sum(1 for q in ctx.captured_queries if _kind(q["sql"]) not in _TX))
        if n in (1, 2, runs):
            captured[n] = [q["sql"] for q in ctx.captured_queries]
    elapsed = time.perf_counter() - started
    return {
        "path": label,
        "runs": runs,
        "run_1": counts[0],
        "run_2": counts[1] if runs > 1 else None,
        f"run_{runs}": counts[-1],
        "last": counts[-1],
        "min": min(counts),
        "max": max(counts),
        "distinct_counts": dict(collections.Counter(counts)),
        "per_run": counts,
        "sql_only_run_1": sql_counts[0],
        "sql_only_run_2": sql_counts[1] if runs > 1 else None,
        "sql_only_last": sql_counts[-1],
        "sql_only_max": max(sql_counts),
        "sql_only_per_run": sql_counts,
        "kinds_run_1": dict(collections.Counter(_kind(s) for s in captured[1])),
        "kinds_last": dict(collections.Counter(_kind(s) for s in captured[runs])),
        "sql_run_1": captured[1],
        "sql_last": captured[runs],
        "wall_ms_per_run": round(elapsed / runs * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Database queries per run, run 1 vs run N of a session.")
    parser.add_argument("--agent", default="bench")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    user = get_user_model().objects.get(username="bench")
    token = Token.objects.get(user=user).key
    message = "What is new today?"

    def engine_run(session: Any) -> Any:
        result = run_agent(agent_id=args.agent, user=user, message=message, session_id=session)
        if result.status != "completed":
            raise RuntimeError(f"engine run failed: {result.error_type} {result.error}")
        return result.session_id

    async def _drain(session: Any) -> Any:
        last = None
        async for event in astream_agent(agent_id=args.agent, user=user, message=message, session_id=session):
            last = event
        if last is None or last.name != "RunCompleted":
            raise RuntimeError(f"streamed run did not complete: {last}")
        return last.session_id

    stream_run = async_to_sync(_drain)

    client = Client(headers={"Authorization": f"Bearer {token}"})
    path = f"/api/agents/{args.agent}/runs"

    def http_run(session: Any) -> Any:
        payload: dict[str, Any] = {"message": message}
        if session is not None:
            payload["session_id"] = session
        response = client.post(path, data=json.dumps(payload), content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.content[:300]!r}")
        return json.loads(response.content)["session_id"]

    results = [
        _measure("engine run_agent (non-streaming)", args.runs, engine_run),
        _measure("engine astream_agent (streaming)", args.runs, stream_run),
        _measure("HTTP POST via test client (non-streaming)", args.runs, http_run),
    ]
    text = json.dumps({"paths": results}, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
