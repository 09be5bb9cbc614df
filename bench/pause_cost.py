"""What a pause/continue cycle costs (docs/human-in-the-loop.md): SQL statements and CPU of a run
whose one tool call needs a confirmation (paused by `run_agent`, continued by `continue_run`),
against the same run with the tool free (one `run_agent`), and a team whose member pauses (paused
by `run_team`, continued by `continue_run` of the team's run), in-process, with the scripted model
server answering at once.

    .venv/bin/python bench/pause_cost.py                 # 50 cycles of each, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentos_bench .venv/bin/python bench/pause_cost.py

SQL statements are what CaptureQueriesContext sees (BEGIN/COMMIT/SAVEPOINT/RELEASE left out).
Without DATABASE_URL a throwaway SQLite database is made (and removed). A report, never a test gate.
"""

from __future__ import annotations

import argparse
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
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-pause-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp.name}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402

from agents_app.engine.approvals import Decision  # noqa: E402
from agents_app.models import Agent, AgentToolRequirement, ModelConfig, Team, TeamMember  # noqa: E402
from agents_app.runs import continue_run, run_agent, run_team  # noqa: E402
from agents_app.testing.scripted_server import ScriptedModelServer  # noqa: E402

_TX = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
CALL = {"name": "calculator", "arguments": {"expression": "6*7"}}


def _setup(base_url: str) -> Any:
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="pause-bench")
    model, _ = ModelConfig.objects.update_or_create(
        name="pause-bench", defaults={"provider": "openai", "base_url": base_url, "model_id": "m", "max_retries": 0}
    )
    for slug in ("free", "careful"):
        Agent.objects.update_or_create(
            slug=f"pause-{slug}", defaults={"name": slug, "model": model, "tools": ["calculator"]}
        )
    careful = Agent.objects.get(slug="pause-careful")
    AgentToolRequirement.objects.update_or_create(
        agent=careful, tool="calculator", defaults={"requirement": "confirmation"}
    )
    team, _ = Team.objects.update_or_create(
        slug="pause-team", defaults={"name": "team", "model": model, "mode": "coordinate"}
    )
    TeamMember.objects.update_or_create(team=team, agent=careful, defaults={"order": 0})
    return user


def _count(ctx: CaptureQueriesContext) -> int:
    return sum(1 for q in ctx.captured_queries if q["sql"].split(None, 1)[0].upper() not in _TX)


def _free(user: Any, server: ScriptedModelServer) -> tuple[int, float]:
    server.push_tool_calls([CALL])
    server.push_text("It is 42.")
    with CaptureQueriesContext(connection) as ctx:
        cpu = time.process_time()
        result = run_agent(agent_id="pause-free", user=user, message="6*7?")
        cpu = time.process_time() - cpu
    assert result.status == "completed", result
    return _count(ctx), cpu * 1000


def _cycle(user: Any, server: ScriptedModelServer) -> tuple[int, float, int, float]:
    server.push_tool_calls([CALL])
    with CaptureQueriesContext(connection) as paused_ctx:
        cpu = time.process_time()
        paused = run_agent(agent_id="pause-careful", user=user, message="6*7?")
        pause_cpu = time.process_time() - cpu
    assert paused.status == "paused", paused
    server.push_text("It is 42.")
    call_id = paused.tools[0]["tool_call_id"]
    with CaptureQueriesContext(connection) as continued_ctx:
        cpu = time.process_time()
        done = continue_run(paused.run_id, user=user, decisions=[Decision(call_id, approve=True)])
        continue_cpu = time.process_time() - cpu
    assert done["status"] == "completed", done
    return _count(paused_ctx), pause_cpu * 1000, _count(continued_ctx), continue_cpu * 1000


DELEGATE = {"name": "delegate_task_to_member", "arguments": {"member_id": "pause-careful", "task": "6*7?"}}


def _team_cycle(user: Any, server: ScriptedModelServer) -> tuple[int, float, int, float]:
    server.push_tool_calls([DELEGATE])
    server.push_tool_calls([CALL])
    with CaptureQueriesContext(connection) as paused_ctx:
        cpu = time.process_time()
        paused = run_team(team_id="pause-team", user=user, message="6*7?")
        pause_cpu = time.process_time() - cpu
    assert paused["status"] == "paused", paused
    server.push_text("It is 42.")
    server.push_text("The member says 42.")
    call_id = paused["tools"][0]["tool_call_id"]
    with CaptureQueriesContext(connection) as continued_ctx:
        cpu = time.process_time()
        done = continue_run(paused["run_id"], user=user, decisions=[Decision(call_id, approve=True)])
        continue_cpu = time.process_time() - cpu
    assert done["status"] == "completed", done
    return _count(paused_ctx), pause_cpu * 1000, _count(continued_ctx), continue_cpu * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    server = ScriptedModelServer().start()
    agentos = {**settings.AGENTOS, "AGENT_CACHE_SECONDS": 3600, "TELEMETRY": False}
    try:
        with override_settings(AGENTOS=agentos):
            user = _setup(server.base_url)
            _free(user, server), _cycle(user, server), _team_cycle(user, server)  # warm-up
            free = [_free(user, server) for _ in range(args.runs)]
            cycles = [_cycle(user, server) for _ in range(args.runs)]
            teams = [_team_cycle(user, server) for _ in range(args.runs)]
    finally:
        server.stop()
    print(f"database: {connection.vendor}; {args.runs} runs each; telemetry off")
    print()
    print("| path | SQL statements | CPU ms (median) |")
    print("|---|---|---|")
    print(
        f"| run with a free tool call | {sorted({f[0] for f in free})} | {statistics.median(f[1] for f in free):.2f} |"
    )
    print(f"| pause (run_agent) | {sorted({c[0] for c in cycles})} | {statistics.median(c[1] for c in cycles):.2f} |")
    print(
        f"| continue (continue_run) | {sorted({c[2] for c in cycles})} | {statistics.median(c[3] for c in cycles):.2f} |"
    )
    both = [c[0] + c[2] for c in cycles]
    print(f"| pause + continue | {sorted(set(both))} | {statistics.median(c[1] + c[3] for c in cycles):.2f} |")
    print(f"| team pause (run_team) | {sorted({c[0] for c in teams})} | {statistics.median(c[1] for c in teams):.2f} |")
    print(
        f"| team continue (continue_run) | {sorted({c[2] for c in teams})} | "
        f"{statistics.median(c[3] for c in teams):.2f} |"
    )
    both = [c[0] + c[2] for c in teams]
    print(f"| team pause + continue | {sorted(set(both))} | {statistics.median(c[1] + c[3] for c in teams):.2f} |")


if __name__ == "__main__":
    main()
