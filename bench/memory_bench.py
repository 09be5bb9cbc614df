"""What memory costs a run: database queries and wall time per run, per memory setting.

In-process, on a temporary SQLite database, with the scripted model server (a real socket and the
real `openai` client) answering the runs. Each configuration runs N messages in one session after a
warm-up run:

* off: no memory (the baseline);
* agentic: 50 stored memories of the user, the relevant ones in the context, memory tools offered;
* automatic (background): the memory manager as a background hook on the embedded worker (its model
  is the offline one, so the scripted answers stay the runs' own);
* summaries (background): session summaries with a 3-run window (a summary update after most runs).

Run: `.venv/bin/python bench/memory_bench.py [--runs 50]`. Prints JSON.
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
_tmp = tempfile.mkdtemp(prefix="agentos-memory-bench-")
os.environ["DATABASE_URL"] = f"sqlite:///{_tmp}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from agents_app.models import Agent, HookExecution, ModelConfig  # noqa: E402
from agents_app.runs import run_agent  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402
from sessions_app.models import Memory  # noqa: E402

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _measure(agent: Agent, user: Any, runs: int) -> dict[str, Any]:
    first = run_agent(agent_id=agent.slug, user=user, message="My name is Ada. Hello!")
    session_id = first.session_id
    queries: list[int] = []
    times: list[float] = []
    for i in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            result = run_agent(
                agent_id=agent.slug, user=user, message=f"I like topic {i}. Tell me about tea.", session_id=session_id
            )
            times.append((time.perf_counter() - started) * 1000)
        assert result.status == "completed", result.error
        queries.append(sum(1 for q in ctx.captured_queries if not q["sql"].startswith(_TRANSACTION_CONTROL)))
    return {
        "sql_queries_per_run": {"min": min(queries), "max": max(queries), "last": queries[-1]},
        "ms_per_run": {"p50": round(statistics.median(times), 2), "mean": round(statistics.fmean(times), 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username="bench")
    with ScriptedModelServer(default_words=50) as server:
        model = ModelConfig.objects.create(
            name="scripted", provider="openai", base_url=server.base_url, model_id="m", max_retries=0
        )
        offline = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
        base = {"model": model, "instructions": "Answer briefly.", "history_runs": 3}
        configs = {
            "off": Agent.objects.create(slug="off", name="off", **base),
            "agentic": Agent.objects.create(slug="agentic", name="agentic", memory_mode="agentic", **base),
            "automatic (background)": Agent.objects.create(
                slug="automatic", name="automatic", memory_mode="automatic", memory_model=offline, **base
            ),
            "summaries (background)": Agent.objects.create(
                slug="summaries", name="summaries", session_summaries=True, memory_model=offline, **base
            ),
        }
        Memory.objects.bulk_create(
            [Memory(user=user, memory=f"The user likes subject {i}.", topics=[f"t{i}"]) for i in range(50)]
        )
        results = {name: _measure(agent, user, args.runs) for name, agent in configs.items()}
        deadline = time.monotonic() + 60
        while HookExecution.objects.exclude(status="succeeded").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        results["background executions"] = dict(
            HookExecution.objects.values_list("hook_name").order_by().annotate(n=django.db.models.Count("id"))
        )
        results["background executions not succeeded"] = HookExecution.objects.exclude(status="succeeded").count()
    print(json.dumps({"runs_per_config": args.runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
