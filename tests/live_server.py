"""Starting a real server process for an end-to-end test, and waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    cmd: list[str],
    *,
    cwd: Path | str,
    env: dict[str, str],
    probe_url: str,
    ready: Callable[[httpx.Response], bool] = lambda response: True,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` until the block ends; fail the test with the server's stderr if `probe_url` does
    not answer (as `ready` wants) within `timeout` seconds."""
    server = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready(httpx.get(probe_url, timeout=1)):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"{cmd[0]} did not start: " + server.stderr.read().decode()[-3000:])
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


def site_env(db: Path, namespace: Any, **extra: str) -> dict[str, str]:
    """The environment of server processes sharing one SQLite database `db` and the test Redis under
    `namespace`'s prefix (tests/redis_helpers.py), as behind a load balancer; `extra` adds variables."""
    import os

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "REDIS_URL": namespace.url,
        "CHANNEL_LAYER_PREFIX": namespace.prefix,
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        **extra,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def site_shell(env: dict[str, str], code: str) -> str:
    """Run `code` in `manage.py shell` with `env` (e.g. migrate and seed the shared database); its output."""
    import sys

    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


@contextmanager
def agno_site(
    db: Path,
    seed: str,
    *,
    settings_module: str | None = None,
    ready: Callable[[httpx.Response], bool] = _ok,
    **extra: str,
) -> Iterator[dict[str, Any]]:
    """A live site for agno's client: `seed` (a `manage.py shell` script that migrates, seeds and
    prints a JSON object of token keys by user name, last) on the SQLite file `db`, then runserver
    until the block ends. Yields `base` (the `/os` prefix) and each user's Bearer headers by name.
    `settings_module` replaces the default settings; `extra` adds environment variables."""
    import json
    import os
    import sys

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        **extra,
    }
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    else:
        env.pop("DJANGO_SETTINGS_MODULE", None)
    tokens = json.loads(site_shell(env, seed).strip().splitlines()[-1])
    port = free_port()
    base = f"http://127.0.0.1:{port}/os"
    cmd = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with serving(cmd, cwd=Path(__file__).resolve().parent.parent, env=env, probe_url=base + "/health", ready=ready):
        yield {"base": base, **{name: {"Authorization": f"Bearer {key}"} for name, key in tokens.items()}}
