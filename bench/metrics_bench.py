"""What the Prometheus metrics cost: CPU per run for recording them (telemetry_app.metrics.record_run,
called once per stored run), with and without multiprocess mode, and the time of one scrape.

    .venv/bin/python bench/metrics_bench.py
    .venv/bin/python bench/metrics_bench.py --calls 200000 --components 50

Recording is in memory (or an mmap'd file in multiprocess mode): no query. A scrape also reads a few
counts from the database (runs going on, hook executions, the telemetry buffer). A report, never a
test gate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from telemetry_app.metrics import record_run, render
calls, components = {calls}, {components}
names = [f"agent-{{i}}" for i in range(components)]
for name in names:  # warm-up: label children exist
    record_run(kind="agent", component=name, status="completed", error_type="", provider="openai",
               duration=1.0, time_to_first_token=0.2, input_tokens=100, output_tokens=50)
started = time.process_time()
for i in range(calls):
    record_run(kind="agent", component=names[i % components], status="completed", error_type="", provider="openai",
               duration=1.5, time_to_first_token=0.3, input_tokens=120, output_tokens=60)
per_call = (time.process_time() - started) / calls
started = time.perf_counter()
for _ in range(20):
    body = render()
scrape = (time.perf_counter() - started) / 20
print(f"{{per_call * 1e6:.2f}} {{scrape * 1e3:.1f}} {{len(body)}}")
"""


def measure(calls: int, components: int, multiprocess: bool) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="agentos-metrics-") as tmp:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/m.sqlite3", "DJANGO_LOG_LEVEL": "ERROR"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        if multiprocess:
            Path(tmp, "prom").mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp, "prom"))
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        code = CHILD.format(root=str(ROOT), calls=calls, components=components)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        per_call, scrape, size = out.stdout.split()
        return float(per_call), float(scrape), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--components", type=int, default=20, help="distinct agents (label values)")
    args = parser.parse_args()
    print(f"{args.calls} recorded runs over {args.components} agents, SQLite, {time.strftime('%Y-%m-%d')}")
    print()
    print("| mode | CPU per recorded run | one scrape | exposition size |")
    print("|---|--:|--:|--:|")
    for multiprocess in (False, True):
        per_call, scrape, size = measure(args.calls, args.components, multiprocess)
        mode = "multiprocess (PROMETHEUS_MULTIPROC_DIR)" if multiprocess else "one process"
        print(f"| {mode} | {per_call:.1f} µs | {scrape:.1f} ms | {size / 1024:.0f} KiB |")


if __name__ == "__main__":
    main()
