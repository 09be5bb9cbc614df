"""Telemetry benchmark: what recording costs a run, and how fast the buffer uploads.

    .venv/bin/python bench/telemetry_bench.py                 # ~1 minute on a 2-core box
    .venv/bin/python bench/telemetry_bench.py --runs 200 --events 5000   # quicker, noisier

1. Added latency per run: `agents_app.runs.run_agent` with the offline model on a throwaway
   SQLite file (WAL, as the site runs it), in pairs of one run with telemetry off and one with it
   on (random order) in the same process, so that drift hits both alike. Reports wall and CPU time
   per run and of the run's final hop (`_Execution._store`, where the modes differ), the median of
   the per-pair differences, the queries per run, and the cost of the telemetry call itself.
2. Upload throughput: a collector (this project under daphne, its own SQLite file) on a loopback
   port; N events put in the buffer, then flushed (batches of --batch-size); events/s from the
   first claim to the last batch marked delivered, checked against what the collector stored.

Prints a markdown report and writes bench/results/telemetry-<timestamp>.json. Every child process
is stopped on exit. A report, never a test gate.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup_django(db: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["DJANGO_LOG_LEVEL"] = "ERROR"
    os.environ["AGENTOS_TELEMETRY"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _set(**values: Any) -> None:
    from django.conf import settings

    settings.AGENTOS = {**settings.AGENTOS, **values}


def bench_latency(runs: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agents_app.engine import runner
    from agents_app.models import Agent, ModelConfig
    from agents_app.runs import run_agent
    from telemetry_app import services
    from telemetry_app.models import TelemetryEvent

    user, _ = get_user_model().objects.get_or_create(username="bench")
    model, _ = ModelConfig.objects.get_or_create(
        name="offline", defaults={"provider": "offline", "model_id": "offline"}
    )
    Agent.objects.get_or_create(slug="bench", defaults={"name": "Bench", "model": model, "history_runs": 3})
    services.telemetry_reset_launch(pending=False)

    # The telemetry call alone, as the engine makes it, timed inside the hop (one INSERT when on).
    call_cost = {}
    for mode in (False, True):
        _set(TELEMETRY=mode)
        samples = []
        for i in range(max(200, runs // 2)):
            t = time.perf_counter()
            services.telemetry_record_run(
                event_type="agent",
                run_id=uuid.uuid4(),
                session_id=uuid.uuid4(),
                component_id="bench",
                model="offline",
                provider="offline",
                status="completed",
                input_tokens=i,
                output_tokens=3,
                time_to_first_token=0.001,
                duration=0.002,
            )
            samples.append(time.perf_counter() - t)
        call_cost["on" if mode else "off"] = statistics.median(samples) * 1000
    TelemetryEvent.objects.all().delete()

    # Time the run's final hop (`_Execution._store`: run_finish + telemetry), where the two modes
    # differ, in wall time and in CPU time of the thread that runs it.
    store_wall: list[float] = []
    store_cpu: list[float] = []
    original_store = runner._Execution._store

    def timed_store(self: Any, *args: Any, **kwargs: Any) -> None:
        t, c = time.perf_counter(), time.thread_time()
        original_store(self, *args, **kwargs)
        store_cpu.append(time.thread_time() - c)
        store_wall.append(time.perf_counter() - t)

    runner._Execution._store = timed_store  # type: ignore[method-assign]
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    stores: dict[str, dict[str, list[float]]] = {"off": {"wall": [], "cpu": []}, "on": {"wall": [], "cpu": []}}
    session_id = run_agent(agent_id="bench", user=user, message="warm up").session_id
    for _ in range(20):  # warm caches, connections and code paths in both modes
        for mode in (False, True):
            _set(TELEMETRY=mode)
            run_agent(agent_id="bench", user=user, message="warm up", session_id=session_id)
    # Pairs: one run off and one on, in random order, so both modes share the machine's moments.
    rng = random.Random(1)
    for i in range(runs):
        order = ["off", "on"]
        rng.shuffle(order)
        for name in order:
            _set(TELEMETRY=name == "on")
            store_wall.clear()
            store_cpu.clear()
            t, c = time.perf_counter(), time.process_time()
            run_agent(agent_id="bench", user=user, message=f"hello {i}", session_id=session_id)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            stores[name]["wall"].extend(store_wall)
            stores[name]["cpu"].extend(store_cpu)
    runner._Execution._store = original_store  # type: ignore[method-assign]
    queries = {}
    for name in ("off", "on"):
        _set(TELEMETRY=name == "on")
        with CaptureQueriesContext(connection) as ctx:
            run_agent(agent_id="bench", user=user, message="count", session_id=session_id)
        queries[name] = len([q for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))])
    _set(TELEMETRY=False)
    out: dict[str, Any] = {"runs_per_mode": len(times["off"]), "queries_per_run": queries, "call_ms": call_cost}
    for name, values in times.items():
        ms = sorted(v * 1000 for v in values)
        out[name] = {
            "median_ms": round(statistics.median(ms), 3),
            "mean_ms": round(statistics.fmean(ms), 3),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3),
            "cpu_median_ms": round(statistics.median(cpu[name]) * 1000, 3),
            "cpu_mean_ms": round(statistics.fmean(cpu[name]) * 1000, 3),
            "store_wall_median_ms": round(statistics.median(stores[name]["wall"]) * 1000, 3),
            "store_cpu_median_ms": round(statistics.median(stores[name]["cpu"]) * 1000, 3),
        }
    for key in ("median_ms", "mean_ms", "cpu_median_ms", "cpu_mean_ms", "store_wall_median_ms", "store_cpu_median_ms"):
        out[f"added_{key}"] = round(out["on"][key] - out["off"][key], 3)

    def paired(on: list[float], off: list[float]) -> float:
        return round(statistics.median(a - b for a, b in zip(on, off, strict=True)) * 1000, 3)

    out["paired_median_ms"] = {
        "wall": paired(times["on"], times["off"]),
        "cpu": paired(cpu["on"], cpu["off"]),
        "final_hop_wall": paired(stores["on"]["wall"], stores["off"]["wall"]),
        "final_hop_cpu": paired(stores["on"]["cpu"], stores["off"]["cpu"]),
    }
    out["events_recorded"] = TelemetryEvent.objects.count()
    return out


def bench_upload(events: int, batch_size: int, workdir: Path, compress: bool) -> dict[str, Any]:
    from django.utils import timezone

    from telemetry_app.models import TelemetryEvent
    from telemetry_app.schemas import RunCreatedEvent
    from telemetry_app.services import _row, telemetry_flush

    collector_db = workdir / f"collector-{batch_size}-{int(compress)}.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{collector_db}",
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        "AGENTOS_TELEMETRY": "false",
        "AGENTOS_TELEMETRY_COLLECTOR_MAX_EVENTS": str(max(1000, batch_size)),
    }

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    manage("migrate", "--noinput")
    key = manage("telemetry_sender_create", "bench").strip()
    port = _free_port()
    log = (workdir / "collector.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the collector did not start") from None
                time.sleep(0.1)
        TelemetryEvent.objects.all().delete()
        now = timezone.now()
        rows = [
            TelemetryEvent(
                **_row(
                    RunCreatedEvent(
                        event_id=uuid.uuid4(),
                        created_at=now,
                        event_type="agent",
                        run_id=str(uuid.uuid4()),
                        session_id=str(uuid.uuid4()),
                        component_id="bench",
                        model="gpt-4o-mini",
                        provider="openai",
                        status="completed",
                        input_tokens=812,
                        output_tokens=97,
                        total_tokens=909,
                        time_to_first_token=0.412,
                        duration=1.734,
                    ),
                    event_type="agent",
                )
            )
            for _ in range(events)
        ]
        TelemetryEvent.objects.bulk_create(rows, batch_size=2000)
        _set(
            TELEMETRY=True,
            TELEMETRY_URL=base,
            TELEMETRY_API_KEY=key,
            TELEMETRY_BATCH_SIZE=batch_size,
            ALPHA_FEATURES=compress,
        )
        t = time.perf_counter()
        result = telemetry_flush(time_budget=3600)
        seconds = time.perf_counter() - t
        _set(TELEMETRY=False, ALPHA_FEATURES=False)
        with sqlite3.connect(collector_db) as db:
            stored = db.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM telemetry_app_receivedevent").fetchone()
        assert result.delivered == events and stored == (events, events), (result, stored)
        return {
            "events": events,
            "batch_size": batch_size,
            "gzip": compress,
            "batches": result.batches,
            "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds),
            "stored_on_collector": stored[0],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per mode (telemetry off / on)")
    parser.add_argument("--events", type=int, default=20_000, help="events to upload")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--no-gzip-variant", action="store_true", help="skip the gzip (alpha) upload variant")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        workdir = Path(tmp)
        _setup_django(workdir / "sender.sqlite3")
        latency = bench_latency(args.runs)
        uploads = [bench_upload(args.events, args.batch_size, workdir, compress=False)]
        if not args.no_gzip_variant:
            uploads.append(bench_upload(args.events, args.batch_size, workdir, compress=True))

    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "latency": latency,
        "uploads": uploads,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"telemetry-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    lat = latency
    print("## Telemetry benchmark\n")
    print(
        f"Per-run wall time, `run_agent` with the offline model, {lat['runs_per_mode']} runs per mode, SQLite (WAL):\n"
    )
    print(
        "| telemetry | wall median | wall mean | wall p95 | CPU median | CPU mean | final hop wall | final hop CPU | queries/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("off", "on"):
        m = lat[name]
        print(
            f"| {name} | {m['median_ms']} ms | {m['mean_ms']} ms | {m['p95_ms']} ms | {m['cpu_median_ms']} ms "
            f"| {m['cpu_mean_ms']} ms | {m['store_wall_median_ms']} ms | {m['store_cpu_median_ms']} ms "
            f"| {lat['queries_per_run'][name]} |"
        )

    def added(key: str) -> str:
        return f"{lat[f'added_{key}'] * 1000:+.0f} µs"

    print(
        f"| added | {added('median_ms')} | {added('mean_ms')} | | {added('cpu_median_ms')} | {added('cpu_mean_ms')} "
        f"| {added('store_wall_median_ms')} | {added('store_cpu_median_ms')} "
        f"| +{lat['queries_per_run']['on'] - lat['queries_per_run']['off']} |"
    )
    p = lat["paired_median_ms"]
    print(
        f"\nMedian of the per-pair differences (on minus off): wall {p['wall'] * 1000:+.0f} µs, "
        f"CPU {p['cpu'] * 1000:+.0f} µs; final hop wall {p['final_hop_wall'] * 1000:+.0f} µs, "
        f"CPU {p['final_hop_cpu'] * 1000:+.0f} µs."
    )
    print(
        f"\nThe telemetry call alone (median, autocommit, i.e. with its own commit): "
        f"{lat['call_ms']['on'] * 1000:.0f} µs on, {lat['call_ms']['off'] * 1000:.1f} µs off.\n"
    )
    print("Upload to a collector (daphne, SQLite) on loopback:\n")
    print("| events | batch size | gzip | batches | seconds | events/s |")
    print("|---|---|---|---|---|---|")
    for u in uploads:
        print(
            f"| {u['events']} | {u['batch_size']} | {'yes' if u['gzip'] else 'no'} | {u['batches']} | {u['seconds']} | {u['events_per_s']} |"
        )
    print(f"\nWrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
