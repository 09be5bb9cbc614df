"""How a server process starts (agentos_site.asgi): AGENTOS_CPU_AFFINITY (sessions_app.affinity),
the process and all its threads on one CPU, processes of one machine on different CPUs; and its
start-up objects frozen out of the garbage collector's scans. Real processes, real affinity masks
(no mocks): the pinning is done in child processes so that the test process is never pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sessions_app.affinity import parse_cpus, pin_to_one_cpu

ROOT = Path(__file__).resolve().parent.parent
needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and a process allowed on 2 CPUs or more",
)

# Imports the site's ASGI module (which applies the setting), then reports every thread's affinity,
# and stays alive (holding its CPU) until its stdin closes.
SITE_PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    started = threading.Event()
    early = threading.Thread(target=started.wait, daemon=True)  # a thread that exists before pinning
    early.start()
    import agentos_site.asgi  # noqa: F401
    late = threading.Thread(target=started.wait, daemon=True)  # one started after
    late.start()
    masks = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    print(json.dumps({"masks": masks}), flush=True)
    sys.stdin.read()
    started.set()
    """
)


def _site_process(tmp_path: Path, spec: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AGENTOS_CPU_AFFINITY": spec,
        "AGENTOS_CPU_LOCK_DIR": str(tmp_path / "locks"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "agentos_site.settings",
    }
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [sys.executable, "-c", SITE_PROBE],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _masks(proc: subprocess.Popen[str]) -> dict[str, list[int]]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return json.loads(line)["masks"]


def _end(*procs: subprocess.Popen[str]) -> list[str]:
    """Let the processes exit; their stderr."""
    return [proc.communicate(timeout=30)[1] for proc in procs]


def test_cpu_lists_read_as_taskset_writes_them():
    assert parse_cpus("3") == {3}
    assert parse_cpus("0-3,6") == {0, 1, 2, 3, 6}
    assert parse_cpus(" 1 , 4-5 ") == {1, 4, 5}
    for bad in ("", "x", "3-1", "-1", ","):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def test_off_leaves_the_process_as_it_is():
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    for spec in ("", "off", "false"):
        assert pin_to_one_cpu(spec) is None
    if before is not None:
        assert os.sched_getaffinity(0) == before


@needs_affinity
def test_two_site_processes_take_different_cpus_with_all_their_threads(tmp_path):
    first = _site_process(tmp_path, "auto")
    first_masks = _masks(first)
    second = _site_process(tmp_path, "auto")  # while the first holds its CPU
    second_masks = _masks(second)
    _end(first, second)
    for masks in (first_masks, second_masks):
        # Every thread, the one started before the site was imported included, on the same one CPU.
        assert len(masks) >= 3 and len({tuple(m) for m in masks.values()}) == 1, masks
        assert len(next(iter(masks.values()))) == 1
    assert next(iter(first_masks.values())) != next(iter(second_masks.values()))


@needs_affinity
def test_a_cpu_freed_by_an_ended_process_is_taken_again(tmp_path):
    first = _site_process(tmp_path, "auto")
    cpu = next(iter(_masks(first).values()))
    _end(first)
    again = _site_process(tmp_path, "auto")
    assert next(iter(_masks(again).values())) == cpu
    _end(again)


@needs_affinity
def test_a_cpu_list_is_kept_to_and_a_foreign_cpu_is_refused(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    listed = _site_process(tmp_path, str(allowed[-1]))
    assert set(map(tuple, _masks(listed).values())) == {(allowed[-1],)}
    # All listed CPUs taken: the process still runs, pinned to one of the list.
    crowded = _site_process(tmp_path, str(allowed[-1]))
    assert set(map(tuple, _masks(crowded).values())) == {(allowed[-1],)}
    foreign = _site_process(tmp_path, str(max(allowed) + 64))
    masks = _masks(foreign)
    errors = _end(listed, crowded, foreign)
    assert all(sorted(m) == allowed for m in masks.values())
    assert "none of those CPUs is allowed" in errors[2]


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="the setting is ignored where no process can be pinned"
)
def test_a_setting_that_is_no_cpu_list_stops_the_start(tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="CPU_AFFINITY='two'"):
        pin_to_one_cpu("two", lock_dir=tmp_path)


def test_the_site_freezes_its_start_up_objects(tmp_path):
    """agentos_site.asgi ends with freeze_startup_objects: the URLconf's views and the model
    providers imported, and what start-up made kept out of the collector's scans."""
    probe = (
        "import gc, json, sys; import agentos_site.asgi; "
        "print(json.dumps([gc.get_freeze_count(), 'agents_app.apis' in sys.modules, "
        "'agents_app.providers.openai_compat' in sys.modules]))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "agentos_site.settings",
    }
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    frozen, views, provider = json.loads(out.stdout.strip().splitlines()[-1])
    assert frozen > 50_000 and views and provider, out.stderr
