"""What incremental persistence costs a streamed run: SQL statements, CPU and bytes written, with
checkpoints every RUN_CHECKPOINT_SECONDS against none (0), in-process.

A streamed run saves its partial output and events every RUN_CHECKPOINT_SECONDS so that a crash of
its process loses at most that window (agents_app.engine.outcome.Execution.checkpoint). The cost
depends on how long a run streams and how many events it has, so this streams answers of a given
length at a given pace from the scripted model server (in this process) and measures, per run:

* SQL statements (what CaptureQueriesContext sees; the checkpoints run on this thread here);
* CPU seconds of this process (the scripted server's thread is the same in every setting, so the
  difference between settings is the checkpoints' cost);
* the bytes of events JSON written by checkpoints.

    .venv/bin/python bench/checkpoint_cost.py                     # 4 s answers, 400 chunks, 5 runs each
    .venv/bin/python bench/checkpoint_cost.py --words 100 --chunk-delay 0.01 --runs 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentos_bench .venv/bin/python bench/checkpoint_cost.py

Without DATABASE_URL a throwaway SQLite database is made (and removed). Settings are alternated
run by run, so drift on a shared machine hits them alike. A report, never a test gate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = None
if "DATABASE_URL" not in os.environ:
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-checkpoint-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp.name}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402

from agents_app.models import Agent, ModelConfig  # noqa: E402
from agents_app.runs import astream_agent  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402


def _setup(base_url: str) -> Any:
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="checkpoint-bench")
    model, _ = ModelConfig.objects.update_or_create(
        name="checkpoint-bench",
        defaults={"provider": "openai", "base_url": base_url, "model_id": "m", "max_retries": 0},
    )
    Agent.objects.update_or_create(slug="checkpoint-bench", defaults={"name": "Checkpoint bench", "model": model})
    return user


def _one_run(user: Any, every: float) -> dict[str, Any]:
    async def drain() -> int:
        events = 0
        async for _ in astream_agent(agent_id="checkpoint-bench", message="talk", user=user):
            events += 1
        return events

    # (The agent stays cached across runs, as on a busy server: only the checkpoints differ.)
    agentos = {**settings.AGENTOS, "RUN_CHECKPOINT_SECONDS": every, "AGENT_CACHE_SECONDS": 3600}
    with override_settings(AGENTOS=agentos), CaptureQueriesContext(connection) as queries:
        cpu, wall = time.process_time(), time.perf_counter()
        events = async_to_sync(drain)()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    sql = [q["sql"] for q in queries.captured_queries]
    statements = [s for s in sql if s.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]
    checkpoints = [s for s in statements if s.startswith("UPDATE") and "events" in s and '"status" =' in s]
    checkpoints = [s for s in checkpoints if "finished_at" not in s]
    return {
        "statements": len(statements),
        "checkpoints": len(checkpoints),
        "checkpoint_bytes": sum(len(s) for s in checkpoints),
        "cpu_ms": cpu * 1000,
        "wall_s": wall,
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=400, help="answer length in words (one chunk each)")
    parser.add_argument("--chunk-delay", type=float, default=0.01, help="seconds between chunks")
    parser.add_argument("--runs", type=int, default=5, help="runs per setting")
    parser.add_argument("--every", default="0,1.0,0.25", help="RUN_CHECKPOINT_SECONDS values (0: off)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    server = ScriptedModelServer().start()
    try:
        user = _setup(server.base_url)
        words = " ".join(f"w{i}" for i in range(args.words))
        settings_list = [float(x) for x in args.every.split(",")]
        results: dict[float, list[dict[str, Any]]] = {every: [] for every in settings_list}
        server.push_text(words, chunk_delay=args.chunk_delay)
        _one_run(user, 0)  # warm-up: caches, the model client
        for _ in range(args.runs):
            for every in settings_list:
                server.push_text(words, chunk_delay=args.chunk_delay)
                results[every].append(_one_run(user, every))
    finally:
        server.stop()
    rows = []
    for every, runs in results.items():
        rows.append(
            {
                "every_s": every,
                "runs": len(runs),
                "stream_s": statistics.median(r["wall_s"] for r in runs),
                "events": statistics.median(r["events"] for r in runs),
                "statements": statistics.median(r["statements"] for r in runs),
                "checkpoints": statistics.median(r["checkpoints"] for r in runs),
                "checkpoint_kb": statistics.median(r["checkpoint_bytes"] for r in runs) / 1024,
                "cpu_ms": statistics.median(r["cpu_ms"] for r in runs),
            }
        )
    if args.json:
        print(json.dumps({"database": connection.vendor, "rows": rows}, indent=2))
        return
    print(f"database: {connection.vendor}; {args.words} chunks, {args.chunk_delay} s apart; {args.runs} runs each")
    print()
    print("| RUN_CHECKPOINT_SECONDS | stream s | events | SQL statements | checkpoints | KiB written | CPU ms/run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['every_s']:g} | {r['stream_s']:.2f} | {r['events']:.0f} | {r['statements']:.0f} | "
            f"{r['checkpoints']:.0f} | {r['checkpoint_kb']:.0f} | {r['cpu_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
