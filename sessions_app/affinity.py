"""Pin a server process, all its threads, to one CPU: `pin_to_one_cpu(spec)` (AGENTOS["CPU_AFFINITY"]).

Why: a server process runs Python on one core at a time (the GIL), but its work is spread over
threads: the event loop and the threads of the database work (sessions_app.db) and of Django's sync
code (sessions_app.asgi). Left to the kernel, those threads run on different cores and hand the run
and the GIL to each other across cores, dozens of times per run; under concurrent load that costs
CPU per run (a quarter more at 8 clients than at 1 on the benchmark box, with three times the
context switches) and latency. Kept on one core, the same hand-offs are cheap. Measured side by side, with
agno's AgentOS pinned the same way: docs/benchmarks.md#one-cpu-per-process.

So a production deployment runs one server process per core, each pinned. `spec`:
- "" or "off": nothing (the default, and what `runserver` needs);
- "auto": one CPU among those the process may use (`os.sched_getaffinity`);
- a CPU list as taskset takes it ("3", "0-3", "0,2,4-7"): one CPU among those.
Several processes of one machine ("uvicorn --workers 4") take different CPUs: each holds an
advisory lock on a file named after its CPU (in `lock_dir`: AGENTOS["CPU_LOCK_DIR"], else a folder
of the temp directory) for as long as it lives, and takes the first CPU not locked; when every CPU
is taken, the process id picks one. Platforms without `os.sched_setaffinity` (macOS, Windows) log a warning and run as
before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

# The lock file of the CPU this process holds: kept open (and so locked) for the process's life.
_held: IO[bytes] | None = None


def parse_cpus(spec: str) -> set[int]:
    """CPUs of a taskset-style list ("0-3,6"); ValueError when it is not one."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        first, last = int(low), int(high) if sep else int(low)
        if first < 0 or last < first:
            raise ValueError(f"not a CPU range: {part!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError("no CPU listed")
    return cpus


def _take_free_cpu(candidates: list[int], lock_dir: Path) -> int:
    """The first candidate whose lock file no other living process holds (locked now, for this
    process's life); when all are held, the process id picks one."""
    global _held
    import fcntl  # POSIX only, as sched_setaffinity

    lock_dir.mkdir(parents=True, exist_ok=True)
    for cpu in candidates:
        handle = open(lock_dir / f"cpu-{cpu}.lock", "ab")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        if _held is not None:
            _held.close()
        _held = handle
        return cpu
    return candidates[os.getpid() % len(candidates)]


def pin_to_one_cpu(spec: str, lock_dir: str | Path | None = None) -> int | None:
    """Pin this process and its threads to one CPU chosen as the module docstring says; the CPU,
    or None when `spec` is off, the platform cannot, or the process may already use only one.
    `lock_dir` empty or None: a folder of the temp directory."""
    spec = (spec or "").strip().lower()
    if spec in ("", "off", "false"):
        return None
    if not hasattr(os, "sched_setaffinity"):
        logger.warning("CPU_AFFINITY=%s ignored: this platform cannot pin a process to a CPU", spec)
        return None
    allowed = os.sched_getaffinity(0)
    try:
        wanted = allowed if spec == "auto" else parse_cpus(spec) & allowed
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"CPU_AFFINITY={spec!r}: {exc}; use 'auto', a CPU list such as '0-3', or ''"
        ) from exc
    if not wanted:
        logger.warning("CPU_AFFINITY=%s ignored: none of those CPUs is allowed to this process (%s)", spec, allowed)
        return None
    if len(allowed) == 1:
        return next(iter(allowed))  # already pinned (taskset, a cpuset): nothing to choose
    folder = Path(lock_dir) if lock_dir else Path(tempfile.gettempdir()) / f"agentos-cpu-{os.getuid()}"
    cpu = _take_free_cpu(sorted(wanted), folder)
    # Threads started from now on inherit the calling thread's affinity; those already running are
    # pinned one by one (on Linux a thread id is accepted where a process id is).
    tids = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in tids:  # the calling thread's among them
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, {cpu})
    logger.info("pinned to CPU %s (CPU_AFFINITY=%s)", cpu, spec)
    return cpu
