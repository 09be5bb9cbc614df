"""End to end, as a site owner runs it: README's commands (migrate, agentos_demo, runserver under
daphne) in real processes on a temporary SQLite file, then the API over a real socket, with the
demo agent and with an agent on the scripted model server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    db = tmp_path_factory.mktemp("site") / "site.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def run(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )

    run("migrate", "--noinput")
    out = run("agentos_demo").stdout
    token = re.search(r"API token for 'admin': (\w+)", out).group(1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        probe_url=base + "/",
    ):
        yield {"base": base, "token": token, "env": env, "run": run}


def test_demo_agent_answers_over_http(site):
    headers = {"Authorization": f"Bearer {site['token']}"}
    r = httpx.post(
        site["base"] + "/api/agents/demo/runs", json={"message": "what is 6*7?"}, headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "[offline demo model] I used my tools: calculator returned 42."
    assert r.headers["server"].lower().startswith("daphne")


def test_demo_team_and_workflow_answer_with_no_api_key(site):
    headers = {"Authorization": f"Bearer {site['token']}"}
    r = httpx.post(
        site["base"] + "/api/teams/demo-team/runs", json={"message": "what is 6*7?"}, headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["mode"] == "collaborate"
    assert [m["member_id"] for m in body["member_runs"]] == ["demo", "demo-writer"]
    assert body["member_runs"][0]["content"] == "[offline demo model] I used my tools: calculator returned 42."
    assert body["content"].startswith("[offline demo model] My team's answers, combined:\n\n## demo\n")
    assert "## demo-writer\n" in body["content"]
    r = httpx.post(
        site["base"] + "/api/workflows/demo-workflow/runs",
        json={"message": "what is 6*7?"},
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "[offline demo model] I used my tools: calculator returned 42."
    assert body["session_state"] == {"last_output": body["content"]}


def test_streaming_over_a_real_socket_arrives_frame_by_frame(site):
    headers = {"Authorization": f"Bearer {site['token']}"}
    frames = []
    with httpx.stream(
        "POST",
        site["base"] + "/api/agents/demo/runs",
        json={"message": "hello there", "stream": True},
        headers=headers,
        timeout=10,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
    assert frames[0]["event"] == "RunStarted" and frames[-1]["event"] == "RunCompleted"
    assert sum(f["event"] == "RunContent" for f in frames) > 5
    session = httpx.get(f"{site['base']}/api/sessions/{frames[0]['session_id']}/", headers=headers, timeout=10).json()
    assert session["runs"][0]["content"] == frames[-1]["content"]


def test_agent_on_an_openai_compatible_server(site, scripted_model):
    site["run"](
        "shell",
        "-c",
        "from agents_app.models import Agent, ModelConfig; "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{scripted_model.base_url}', model_id='m', max_retries=0); "
        "Agent.objects.create(slug='remote', name='Remote', model=m)",
    )
    time.sleep(0.1)
    scripted_model.push_text("Hello from the scripted server")
    headers = {"Authorization": f"Bearer {site['token']}"}
    r = httpx.post(site["base"] + "/api/agents/remote/runs", json={"message": "hi"}, headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["content"] == "Hello from the scripted server"
    assert scripted_model.requests[-1]["messages"][-1] == {"role": "user", "content": "hi"}
