"""The supported production server, as docs/deployment.md gives it: its web command (taken from the
doc, between the `web-command` markers) in a real process with DJANGO_DEBUG=false after
`collectstatic` into a temporary STATIC_ROOT, JSON logs on. Checked over real sockets: a run over
HTTP and over SSE, the static files of the admin, the chat page and the API docs page (hashed,
compressed, cached), a run over a websocket, request ids, and the log lines."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
IMMUTABLE = "max-age=315360000, public, immutable"


def documented_command(port: int) -> list[str]:
    """docs/deployment.md's web command, on a loopback port, with this venv's executables."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    block = re.search(r"<!-- web-command -->\n```\n(.+?)\n```\n<!-- /web-command -->", doc, re.S)
    assert block, "docs/deployment.md has no command between <!-- web-command --> markers"
    argv = shlex.split(block.group(1).replace("\\\n", " "))  # with its line continuations
    assert argv[0] == ".venv/bin/uvicorn", argv
    argv[0] = str(Path(sys.executable).parent / "uvicorn")
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("production")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "a-production-like-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_STATIC_ROOT": str(tmp / "static"),
        "DJANGO_LOG_FORMAT": "json",
        "DJANGO_LOG_LEVEL": "INFO",
    }
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL"):  # one process: the in-memory channel layer
        env.pop(name, None)

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    manage("migrate", "--noinput")
    manage("collectstatic", "--noinput")
    token = re.search(r"API token for 'admin': (\w+)", manage("agentos_demo")).group(1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(documented_command(port), cwd=ROOT, env=env, probe_url=base + "/api/agents/") as server:
        yield {"base": base, "port": port, "token": token, "server": server, "static": tmp / "static"}


def test_the_server_is_uvicorn_and_answers_runs_over_http_and_sse(site):
    headers = {"Authorization": f"Bearer {site['token']}"}
    r = httpx.post(site["base"] + "/api/agents/demo/runs", json={"message": "what is 6*7?"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "[offline demo model] I used my tools: calculator returned 42."
    assert r.headers["server"] == "uvicorn" and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    frames = []
    body = {"message": "hello there", "stream": True}
    with httpx.stream("POST", site["base"] + "/api/agents/demo/runs", json=body, headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[0]["event"] == "RunStarted" and frames[-1]["event"] == "RunCompleted"


def _asset(html: str, pattern: str) -> str:
    found = re.search(r'(?:href|src)="(/static/' + pattern + ')"', html)
    assert found, f"no {pattern} in the page"
    return found.group(1)


def _check_hashed_and_compressed(base: str, url: str, content_type: str) -> None:
    assert re.search(r"\.[0-9a-f]{12}\.\w+$", url), f"{url} has no content hash"
    plain = httpx.get(base + url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith(content_type)
    assert plain.headers["cache-control"] == IMMUTABLE and "content-encoding" not in plain.headers
    packed = httpx.get(base + url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert int(packed.headers["content-length"]) < int(plain.headers["content-length"])
    assert packed.content == plain.content  # httpx decoded it
    assert "x-request-id" not in plain.headers  # served before Django


def test_the_admin_chat_page_and_api_docs_get_their_static_files(site):
    base = site["base"]
    with httpx.Client(base_url=base) as client:
        login = client.get("/admin/login/")
        assert login.status_code == 200
        _check_hashed_and_compressed(base, _asset(login.text, r"admin/css/base\.[0-9a-f]{12}\.css"), "text/css")
        # The unhashed name is served too (briefly cached), for anything that links it directly.
        r = client.get("/static/admin/css/base.css")
        assert r.status_code == 200 and r.headers["cache-control"] == "max-age=60, public"

        page = client.get("/chat/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        r = client.post("/chat/login/", data={"username": "admin", "password": "admin", "csrfmiddlewaretoken": csrf})
        assert r.status_code == 302, r.text[:500]
        chat = client.get("/chat/")
        assert chat.status_code == 200
        for pattern, kind in (
            (r"agents_app/chat\.[0-9a-f]{12}\.js", "text/javascript"),
            (r"agents_app/chat\.[0-9a-f]{12}\.css", "text/css"),
        ):
            _check_hashed_and_compressed(base, _asset(chat.text, pattern), kind)

        docs = client.get("/api/docs/")
        assert docs.status_code == 200
        bundle = _asset(docs.text, r"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js")
        _check_hashed_and_compressed(base, bundle, "text/javascript")

    assert httpx.get(base + "/static/admin/css/nope.css").status_code == 404
    # What collectstatic wrote: hashed copies and their gzip variants.
    assert list(site["static"].glob("agents_app/chat.*.js.gz"))


def test_a_websocket_run(site):
    from websockets.asyncio.client import connect

    async def talk() -> list[dict[str, Any]]:
        url = f"ws://127.0.0.1:{site['port']}/ws/agents/demo/"
        async with connect(url, subprotocols=["agentos", f"token.{site['token']}"], open_timeout=5) as ws:
            assert ws.subprotocol == "agentos"
            # The client offered permessage-deflate (as browsers do); the server declines it, which
            # halves what an idle socket costs (docs/deployment.md#asgi-server).
            assert ws.protocol.extensions == []
            await ws.send(json.dumps({"type": "run", "message": "what is 6*7?"}))
            frames = []
            while not frames or frames[-1]["event"] not in ("RunCompleted", "RunError", "RunCancelled"):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return frames

    frames = asyncio.run(talk())
    assert frames[-1]["event"] == "RunCompleted"
    assert frames[-1]["content"] == "[offline demo model] I used my tools: calculator returned 42."


# Last: it stops the server to read everything it logged.
def test_log_lines_are_json_printed_once_with_the_request_id(site):
    r = httpx.get(site["base"] + "/no-such-page/", headers={"X-Request-ID": "smoke-404"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "smoke-404"
    time.sleep(0.3)
    server = site["server"]
    server.terminate()
    server.wait(10)
    lines = server.stderr.read().decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's own too
    not_found = [rec for rec in records if rec["message"] == "Not Found: /no-such-page/"]
    assert len(not_found) == 1, lines
    assert not_found[0]["request_id"] == "smoke-404" and not_found[0]["level"] == "WARNING"
    assert any(rec["logger"].startswith("uvicorn") and "Uvicorn running" in rec["message"] for rec in records)
    assert not [rec for rec in records if rec["logger"] == "uvicorn.access"]  # --no-access-log
