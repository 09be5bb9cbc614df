"""The run engine: one prepared run in, typed events out, everything persisted. Plain async Python
with no HTTP and no knowledge of processes; `agents_app.runs` is the API to start runs with."""

from agents_app.engine.protocol import InvalidRunInput, RunnableHandle
from agents_app.engine.runner import RunHandle, RunResult, execute, run_prepare

__all__ = ["InvalidRunInput", "RunHandle", "RunResult", "RunnableHandle", "execute", "run_prepare"]
