"""What cost accounting adds to a run: CPU per model call, and SQL statements and CPU per run, for
an agent whose model config has prices against one whose config has none, in-process.

(a) `agents_app.pricing.call_cost` (+ `as_number`, what events and telemetry carry) per call, timed
    in a loop: a config with input, cached input and output prices; one with none (the early
    return).
(b) Runs through `agents_app.runs.run_agent` (and `astream_agent`, streamed) against the scripted
    model server (in this process, answering at once with its usage): SQL statements per run (what
    CaptureQueriesContext sees; BEGIN/COMMIT/SAVEPOINT/RELEASE left out) and CPU per run, priced
    and unpriced runs alternated, each in a fresh session, after a warm-up of each. The cost is
    stored by run_finish's UPDATE, so the expected difference in statements is 0. The stored cost
    is reported too: it stays 0 until the engine prices the calls.

    .venv/bin/python bench/cost_overhead.py                   # 50 runs of each, SQLite
    .venv/bin/python bench/cost_overhead.py --runs 200 --telemetry
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentos_bench .venv/bin/python bench/cost_overhead.py

Without DATABASE_URL a throwaway SQLite database is made (and removed). A report, never a test gate.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = None
if "DATABASE_URL" not in os.environ:
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-cost-")
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
from agents_app.pricing import as_number, call_cost  # noqa: E402
from agents_app.runs import astream_agent, run_agent  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402
from sessions_app.models import Run  # noqa: E402

_TX = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
PRICES = {"input_price": Decimal("2.50"), "cached_input_price": Decimal("1.25"), "output_price": Decimal("10.00")}


def _pricing_cpu(calls: int, repeats: int) -> dict[str, float]:
    """Microseconds of CPU per call_cost + as_number, best of `repeats` loops of `calls` calls."""
    priced = ModelConfig(name="p", provider="openai", model_id="m", **PRICES)
    free = ModelConfig(name="f", provider="openai", model_id="m")
    out = {}
    for label, config in (("prices", priced), ("no prices", free)):
        best = float("inf")
        for _ in range(repeats):
            started = time.process_time()
            for i in range(calls):
                as_number(call_cost(config, input_tokens=1200 + i % 7, output_tokens=300, cache_read_tokens=1024))
            best = min(best, time.process_time() - started)
        out[label] = best / calls * 1e6
    return out


def _setup(base_url: str) -> Any:
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="cost-bench")
    common = {"provider": "openai", "base_url": base_url, "model_id": "scripted", "max_retries": 0}
    priced, _ = ModelConfig.objects.update_or_create(name="cost-bench-priced", defaults={**common, **PRICES})
    free, _ = ModelConfig.objects.update_or_create(name="cost-bench-free", defaults=common)
    for slug, model in (("priced", priced), ("free", free)):
        Agent.objects.update_or_create(slug=f"cost-{slug}", defaults={"name": slug, "model": model})
    return user


def _statements(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].split(None, 1)[0].upper() not in _TX]


def _shape(sql: str) -> str:
    """A statement without its values (ids, times, tokens, costs differ from run to run)."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    return re.sub(r"(?<![\w\"])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b", "?", sql)


def _one_run(user: Any, slug: str, streamed: bool, server: ScriptedModelServer) -> dict[str, Any]:
    async def drain() -> Any:
        last = None
        async for event in astream_agent(agent_id=slug, message="What is new today?", user=user):
            last = event
        return last.run_id

    server.push_text("Nothing much, a quiet day with a few words to stream back.")
    with CaptureQueriesContext(connection) as ctx:
        cpu = time.process_time()
        if streamed:
            run_id = async_to_sync(drain)()
        else:
            run_id = run_agent(agent_id=slug, user=user, message="What is new today?").run_id
        cpu = time.process_time() - cpu
    run = Run.objects.get(pk=run_id)
    if run.status != "completed":
        raise RuntimeError(f"run {run_id} ended {run.status}: {run.error_type} {run.error}")
    return {"statements": len(_statements(ctx)), "sql": _statements(ctx), "cpu_ms": cpu * 1000, "run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of each config per path")
    parser.add_argument("--calls", type=int, default=100_000, help="call_cost calls per CPU loop")
    parser.add_argument("--telemetry", action="store_true", help="with AGENTOS_TELEMETRY on (an event per run)")
    args = parser.parse_args()

    pricing = _pricing_cpu(args.calls, repeats=5)
    server = ScriptedModelServer().start()
    agentos = {**settings.AGENTOS, "AGENT_CACHE_SECONDS": 3600, "TELEMETRY": args.telemetry}
    rows = []
    diffs: dict[str, float] = {}
    try:
        with override_settings(AGENTOS=agentos):
            user = _setup(server.base_url)
            for streamed in (False, True):
                results: dict[str, list[dict[str, Any]]] = {"priced": [], "free": []}
                for slug in results:  # warm-up: caches, the model client
                    _one_run(user, f"cost-{slug}", streamed, server)
                for _ in range(args.runs):
                    for slug in results:
                        results[slug].append(_one_run(user, f"cost-{slug}", streamed, server))
                pairs = [p["cpu_ms"] - f["cpu_ms"] for p, f in zip(results["priced"], results["free"], strict=True)]
                diffs["astream_agent" if streamed else "run_agent"] = statistics.median(pairs)
                for slug, runs in results.items():
                    last = runs[-1]["run"]
                    rows.append(
                        {
                            "path": "astream_agent" if streamed else "run_agent",
                            "config": "prices" if slug == "priced" else "no prices",
                            "statements": sorted({r["statements"] for r in runs}),
                            "cpu_ms": statistics.median(r["cpu_ms"] for r in runs),
                            "tokens": (last.input_tokens, last.output_tokens, last.cache_read_tokens),
                            "cost": (last.cost, last.total_cost),
                            "sql": runs[-1]["sql"],
                        }
                    )
    finally:
        server.stop()

    print(f"database: {connection.vendor}; telemetry {'on' if args.telemetry else 'off'}; {args.runs} runs each")
    print()
    print("| call_cost + as_number | CPU µs per call |")
    print("|---|---|")
    for label, micros in pricing.items():
        print(f"| config with {label} | {micros:.2f} |")
    print()
    print(
        "| path | config | SQL statements per run | CPU ms per run (median) | tokens in/out/cached (last run) | stored cost / total cost (last run) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        statements = ", ".join(map(str, r["statements"]))
        tokens = "/".join(map(str, r["tokens"]))
        cost = " / ".join(f"{c.normalize():f}" for c in r["cost"])
        print(f"| {r['path']} | {r['config']} | {statements} | {r['cpu_ms']:.2f} | {tokens} | {cost} |")
    for path in ("run_agent", "astream_agent"):
        priced, free = (
            next(r for r in rows if r["path"] == path and r["config"] == c) for c in ("prices", "no prices")
        )
        same = [_shape(q) for q in priced["sql"]] == [_shape(q) for q in free["sql"]]
        extra = len(priced["sql"]) - len(free["sql"])
        print()
        print(
            f"{path}: {extra:+d} statements with prices; the statements are "
            f"{'the same' if same else 'different'} (values aside); CPU {diffs[path]:+.3f} ms per run "
            "(median of the priced-minus-unpriced pairs)."
        )
        if not same:
            for a, b in zip(priced["sql"], free["sql"], strict=False):
                if _shape(a) != _shape(b):
                    print(f"  first difference:\n    prices:    {a[:300]}\n    no prices: {b[:300]}")
                    break


if __name__ == "__main__":
    main()
