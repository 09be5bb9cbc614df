"""An eval run on a real Celery worker process and the Redis broker (the stack of
tests/test_hooks_celery.py): a producer (`manage.py shell`, as a web process would) queues a suite,
one task per case; the worker runs the cases through the run pipeline and settles the eval run.
Slow (processes), so one test. Skipped without the test Redis, except in CI."""

from __future__ import annotations

import time

import pytest

from tests.test_hooks_celery import ROOT, _query, _wait_for, stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

PRODUCE = """
import json
from agents_app.models import Agent, EvalCase, EvalSuite, ModelConfig
from agents_app.evals.services import eval_run_start
model = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
agent = Agent.objects.create(slug="maths", name="Maths", model=model, tools=["calculator"])
suite = EvalSuite.objects.create(slug="maths", name="Maths", agent=agent)
EvalCase.objects.create(suite=suite, position=0, kind="reliability", input="What is 6*7?",
                        expected_tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}])
EvalCase.objects.create(suite=suite, position=1, kind="reliability", input="Tell me a story.",
                        expected_tool_calls=["calculator"])
EvalCase.objects.create(suite=suite, position=2, kind="accuracy", input="What is 6*7?", expected_output="42")
run = eval_run_start(suite=suite)
print(json.dumps({"eval_run_id": run.pk.hex, "status": run.status}))
"""


def test_an_eval_run_runs_one_task_per_case_on_a_real_worker(stack):  # noqa: F811 - the fixture
    stack["start_worker"]("evals", "--pool=threads", "--concurrency=2")
    started = time.perf_counter()
    queued = stack["shell_json"](PRODUCE)
    assert queued["status"] == "queued"
    run_id = queued["eval_run_id"]

    def finished() -> tuple | None:
        rows = _query(stack["db"], "SELECT status, score, cases_done FROM agents_app_evalrun WHERE id = ?", run_id)
        return rows[0] if rows and rows[0][0] not in ("queued", "running") else None

    status, score, done = _wait_for(finished, 60, "the eval run to end")
    print(f"eval run of 3 cases on a real worker: {time.perf_counter() - started:.2f} s")
    assert (status, round(score, 2), done) == ("failed", 66.67, 3)
    results = _query(
        stack["db"],
        "SELECT position, status, attempts, reason FROM agents_app_evalcaseresult WHERE eval_run_id = ? ORDER BY position",
        run_id,
    )
    assert [(p, s, a) for p, s, a, _ in results] == [(0, "passed", 1), (1, "failed", 1), (2, "passed", 1)]
    assert results[1][3] == "Tool calls missing: calculator."
    # The evaluated runs are stored runs, in sessions marked as an eval's.
    sessions = _query(stack["db"], "SELECT COUNT(*) FROM sessions_app_session WHERE is_eval = 1")
    assert sessions == [(3,)]
    log = stack["workers"][0][1].read_text()
    assert log.count("agents_app.eval_case_execute") >= 3
