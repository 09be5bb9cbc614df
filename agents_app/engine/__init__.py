"""The run engine's public API: prepare/execute for edges, run_agent/stream_agent for Python code."""

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

__all__ = [
    "InvalidRunInput",
    "RunHandle",
    "RunResult",
    "arun",
    "arun_agent",
    "astream_agent",
    "execute",
    "run_agent",
    "run_prepare",
    "stream_agent",
    "stream_detached",
]
