"""What evals cost: the overhead an eval case adds to the run it evaluates, and how many cases per
minute one worker sustains with the instant scripted model.

In-process, on a temporary SQLite database, with the scripted model server (a real socket and the
real `openai` client) answering at once:

* plain run: `run_agent` in a fresh session (what an eval case runs), the baseline;
* reliability case (no judge): one eval case run by `eval_case_execute` (the Celery task's body):
  claim, an eval session, the same run, the tool-call comparison, the result row, the eval run's end;
  its wall time minus the plain run's is the overhead;
* accuracy case (one judge call): the same plus the judge's structured-output call;
* throughput: N cases of an eval run on the embedded Celery worker with one thread (memory://
  broker, the real worker code), from the start to the eval run's end: cases per minute.

Run: `.venv/bin/python bench/eval_bench.py [--runs 30] [--cases 60]`. Prints JSON.
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
_tmp = tempfile.mkdtemp(prefix="agentos-eval-bench-")
os.environ["DATABASE_URL"] = f"sqlite:///{_tmp}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")
os.environ["AGENTOS_HOOKS_EMBEDDED_WORKER"] = "true"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from agents_app.eval_models import EvalCase, EvalRun, EvalSuite  # noqa: E402
from agents_app.evals.runner import eval_case_execute  # noqa: E402
from agents_app.evals.services import eval_run_start  # noqa: E402
from agents_app.models import Agent, ModelConfig  # noqa: E402
from agents_app.runs import run_agent  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
    }


def _one_case(suite: EvalSuite, case: EvalCase, server: ScriptedModelServer, judged: bool) -> float:
    run = eval_run_start(suite=suite, cases=[case], publish=False)
    result_id = run.results.get().pk
    if judged:
        server.push_text("4")
        server.push_json({"score": 9, "reason": "Right."})
    started = time.perf_counter()
    eval_case_execute(result_id=result_id)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cases", type=int, default=60)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    settings.AGENTOS = {**settings.AGENTOS, "HOOKS_EMBEDDED_CONCURRENCY": 1}
    server = ScriptedModelServer().start()
    try:
        model = ModelConfig.objects.create(
            name="scripted", provider="openai", base_url=server.base_url, model_id="scripted-model", max_retries=0
        )
        agent = Agent.objects.create(slug="bench", name="Bench", model=model, tools=["calculator"])
        user = get_user_model().objects.create(username="bench")
        suite = EvalSuite.objects.create(slug="bench", name="Bench", agent=agent, judge_model=model)
        reliability = EvalCase.objects.create(
            suite=suite, kind="reliability", input="hello", expected_tool_calls=["calculator"]
        )
        accuracy = EvalCase.objects.create(suite=suite, kind="accuracy", input="What is 2+2?", expected_output="4")
        # Warm up: connections, caches, the provider's pool.
        for _ in range(3):
            run_agent(agent_id="bench", user=user, message="hello")
            _one_case(suite, reliability, server, judged=False)
        plain = [0.0] * args.runs
        for i in range(args.runs):
            started = time.perf_counter()
            run_agent(agent_id="bench", user=user, message="hello")
            plain[i] = time.perf_counter() - started
        unjudged = [_one_case(suite, reliability, server, judged=False) for _ in range(args.runs)]
        judged = [_one_case(suite, accuracy, server, judged=True) for _ in range(args.runs)]
        base = statistics.median(plain)

        # Throughput: N cases on the embedded worker with one thread.
        many = EvalSuite.objects.create(slug="many", name="Many", agent=agent)
        EvalCase.objects.bulk_create(
            EvalCase(suite=many, position=i, kind="reliability", input="hello", expected_tool_calls=["calculator"])
            for i in range(args.cases)
        )
        started = time.perf_counter()
        run = eval_run_start(suite=many)
        while True:
            status = EvalRun.objects.values_list("status", flat=True).get(pk=run.pk)
            if status not in ("queued", "running"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        report: dict[str, Any] = {
            "runs": args.runs,
            "plain_run": _ms(plain),
            "reliability_case": _ms(unjudged),
            "accuracy_case_with_judge": _ms(judged),
            "overhead_per_case_ms": {
                "reliability": round((statistics.median(unjudged) - base) * 1000, 2),
                "accuracy_with_judge": round((statistics.median(judged) - base) * 1000, 2),
            },
            "throughput_one_worker_thread": {
                "cases": args.cases,
                "seconds": round(elapsed, 2),
                "cases_per_minute": round(args.cases / elapsed * 60, 1),
                "status": status,
            },
        }
        print(json.dumps(report, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
