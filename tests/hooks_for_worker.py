"""A hook for the Celery integration test: slow, with a side effect outside the database (a line in
a file, at-least-once) and one inside it (a session-state counter, exactly once)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents_app.hooks import HookContext, hook


@hook(background=True, retries=3, timeout=4.0, phases=["post"])
def slow_counter(ctx: HookContext) -> None:
    """Mark the attempt's start, sleep, then count the run in the session state."""
    folder = Path(os.environ["AGENTOS_TEST_MARKER_DIR"])
    (folder / f"started-{ctx.attempt}").write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("AGENTOS_TEST_HOOK_SLEEP", "1.5")))
    with (folder / "finished.log").open("a") as log:
        log.write(f"{ctx.run_id} attempt {ctx.attempt}\n")
    ctx.session_state["count"] = ctx.session_state.get("count", 0) + 1
