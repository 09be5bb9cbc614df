"""agno's AgentOS (the FastAPI server we compete with), set up like our `bench` agent: one agent on
the scripted model server (`AGNO_BENCH_MODEL_URL`), SQLite storage (`AGNO_BENCH_DB`), the last 3
runs of the session in context, telemetry off. `bench/run.py --servers daphne,agno` serves it with
uvicorn (agno's own choice) and loads it with the same client as ours.

Needs `pip install -r bench/requirements.txt` (agno's SQLite storage and form parsing).
"""

from __future__ import annotations

import os

from agno.agent import Agent
from agno.db.sqlite import SqliteDb
from agno.models.openai import OpenAIChat
from agno.os import AgentOS

agent = Agent(
    id="bench",
    name="Benchmark agent",
    model=OpenAIChat(id="scripted-model", base_url=os.environ["AGNO_BENCH_MODEL_URL"], api_key="bench", max_retries=0),
    db=SqliteDb(db_file=os.environ["AGNO_BENCH_DB"]),
    instructions="You are a benchmark agent. Answer briefly.",
    add_history_to_context=True,
    num_history_runs=3,
    telemetry=False,
)
app = AgentOS(agents=[agent], telemetry=False).get_app()
