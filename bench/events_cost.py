"""What a run's events cost: CPU per run and the stored events' size, in-process, for one agent run
with one tool call (two model requests) against the scripted model server answering at once, whole
(`run_agent`) and streamed (`astream_agent`). Run it on two commits to compare event vocabularies:

    .venv/bin/python bench/events_cost.py                 # 100 runs of each path, SQLite
    .venv/bin/python bench/events_cost.py --runs 300

Reports, per path: the median CPU ms per run, the events per run, and the bytes of the stored
events (`Run.events` as compact JSON). A report, never a test gate.
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
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-events-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp.name}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from agents_app.models import Agent, ModelConfig  # noqa: E402
from agents_app.runs import astream_agent, run_agent  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402
from sessions_app.models import Run  # noqa: E402


def _one(user: Any, streamed: bool, server: ScriptedModelServer) -> tuple[float, Run]:
    async def drain() -> Any:
        last = None
        async for event in astream_agent(agent_id="events-bench", message="6*7?", user=user):
            last = event
        return last.run_id

    server.push_tool_calls([{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "c1"}])
    server.push_text("It is 42, the answer to a question nobody asked today.")
    cpu = time.process_time()
    run_id = (
        async_to_sync(drain)() if streamed else run_agent(agent_id="events-bench", user=user, message="6*7?").run_id
    )
    cpu = time.process_time() - cpu
    return cpu * 1000, Run.objects.get(pk=run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    server = ScriptedModelServer().start()
    try:
        with override_settings(AGENTOS={**settings.AGENTOS, "AGENT_CACHE_SECONDS": 3600}):
            call_command("migrate", verbosity=0)
            user, _ = get_user_model().objects.get_or_create(username="events-bench")
            model, _ = ModelConfig.objects.update_or_create(
                name="events-bench",
                defaults={"provider": "openai", "base_url": server.base_url, "model_id": "scripted", "max_retries": 0},
            )
            Agent.objects.update_or_create(
                slug="events-bench", defaults={"name": "bench", "model": model, "tools": ["calculator"]}
            )
            print("| path | CPU ms per run (median) | events per run | stored events, bytes per run |")
            print("|---|---|---|---|")
            for streamed in (False, True):
                _one(user, streamed, server)  # warm-up
                rows = [_one(user, streamed, server) for _ in range(args.runs)]
                cpu = statistics.median(r[0] for r in rows)
                run = rows[-1][1]
                size = len(json.dumps(run.events, separators=(",", ":")))
                path = "astream_agent" if streamed else "run_agent"
                print(f"| {path} | {cpu:.2f} | {len(run.events)} | {size} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
