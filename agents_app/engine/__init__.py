"""The run engine's public API: prepare/execute for edges, run_agent/stream_agent for Python code,
and the same for teams and workflows (run_team/astream_team, run_workflow/astream_workflow)."""

from agents_app.engine.runner import (
    InvalidRunInput,
    RunHandle,
    RunResult,
    arun,
    arun_agent,
    astream_agent,
    execute,
    run_agent,
    run_prepare,
    stream_agent,
    stream_detached,
)
from agents_app.engine.team import arun_team, astream_team, run_team
from agents_app.engine.workflow import arun_workflow, astream_workflow, run_workflow

__all__ = [
    "InvalidRunInput",
    "RunHandle",
    "RunResult",
    "arun",
    "arun_agent",
    "arun_team",
    "arun_workflow",
    "astream_agent",
    "astream_team",
    "astream_workflow",
    "execute",
    "run_agent",
    "run_prepare",
    "run_team",
    "run_workflow",
    "stream_agent",
    "stream_detached",
]
