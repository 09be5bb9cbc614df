"""The terminal chat (`manage.py agentos_chat`) in a pseudo-terminal with the offline demo model,
in-process on a SQLite file and against a live server (`--url`, through agentos_client); and
`agentos_run` for scripts, its JSON parsed."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rich.console import Console

from agents_app.management.chat import AnswerView
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("terminal") / "site.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        "TERM": "xterm-256color",
    }
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "AGENTOS_TOKEN"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "agentos_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    token = re.search(r"API token for 'admin': (\w+)", out).group(1)
    seed = (
        "from agents_app.models import Agent, ModelConfig; "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
        "model_id='m', max_retries=0); "
        "Agent.objects.create(slug='slow', name='Slow', model=m)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", seed], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port = free_port()
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"]
    with serving(cmd, cwd=ROOT, env=env, probe_url=f"http://127.0.0.1:{port}/healthz"):
        yield {"env": env, "url": f"http://127.0.0.1:{port}", "token": token}


def _manage(site: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=site["env"], capture_output=True, text=True, timeout=60
    )


def _spawn_chat(site: dict[str, Any], *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["manage.py", "agentos_chat", *args],
        cwd=str(ROOT),
        # Rich takes COLUMNS/LINES over the terminal's size: pin them to the pty's (pytest-xdist's
        # workers inherit an 80-column COLUMNS, which would cut the session ids in /sessions).
        env={**site["env"], "COLUMNS": "120", "LINES": "50"},
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 120),
        use_poll=True,  # select() fails on descriptors past 1024 (a long test session opens many)
    )
    child.expect("you>")
    return child


def _until_prompt(child: pexpect.spawn) -> str:
    child.expect("you>")
    return ANSI.sub("", child.before)


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "remote"])
def test_chat_in_a_pseudo_terminal(site, remote):
    args = ["demo"] + (["--url", site["url"], "--token", site["token"]] if remote else [])
    child = _spawn_chat(site, *args)
    try:
        child.sendline("what is 6*7?")
        screen = _until_prompt(child)
        assert "tool call" in screen and 'calculator({"expression": "6*7"})' in screen and "→ 42" in screen
        assert "[offline demo model] I used my tools: calculator returned 42." in screen
        assert re.search(r"tokens 33 in / 11 out \(44\) · cost 0\.000000 · time \d+\.\d\ds", screen), screen

        child.sendline("/sessions")
        table = _until_prompt(child)
        current = re.search(r"●\s*│\s*(" + UUID.pattern + ")", table).group(1)

        child.sendline("/new")
        assert "New session" in _until_prompt(child)
        child.sendline("hello there")
        assert 'You said: "hello there"' in _until_prompt(child)
        child.sendline("/sessions")
        table = _until_prompt(child)
        marked = re.search(r"●\s*│\s*(" + UUID.pattern + ")", table).group(1)
        assert marked != current and current in table  # a second session, the first still listed

        child.sendline(f"/switch {current[:8]}")
        assert f"Switched to session {current}" in _until_prompt(child)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "remote"])
def test_ctrl_c_cancels_the_answer_and_a_second_ctrl_c_at_the_prompt_exits(site, scripted_model, remote):
    import httpx

    args = ["slow"] + (["--url", site["url"], "--token", site["token"]] if remote else [])
    child = _spawn_chat(site, *args)
    try:
        scripted_model.push_text(" ".join(f"word{i}" for i in range(100)), chunk_delay=0.1)  # 10 s of answer
        child.sendline("count slowly")
        child.expect("word3")  # streaming
        child.sendintr()
        screen = _until_prompt(child)
        assert "The answer was stopped." in screen, screen
        run_id = re.search(r"Cancelled run (" + UUID.pattern + ")", screen).group(1)
        assert "word99" not in screen
        child.sendintr()  # at the prompt: the chat ends
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    run = httpx.get(
        f"{site['url']}/api/runs/{run_id}/", headers={"Authorization": f"Bearer {site['token']}"}, timeout=10
    ).json()
    assert run["status"] == "cancelled" and run["content"].startswith("word0 word1 word2 word3")
    assert len(scripted_model.requests) == 1


def test_a_refused_message_is_shown_and_the_chat_goes_on(site):
    # A session of another runnable (an unknown id would be created for the caller, agno's way).
    other = httpx.post(
        f"{site['url']}/api/workflows/demo-workflow/runs",
        json={"message": "hi"},
        headers={"Authorization": f"Bearer {site['token']}"},
        timeout=30,
    ).json()["session_id"]
    child = _spawn_chat(site, "demo", "--session", other)
    try:
        child.sendline("hi")
        assert "refused: unknown_session" in _until_prompt(child)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "remote"])
def test_a_team_whose_member_pauses_shows_the_waiting_call_and_keeps_its_session(site, remote):
    # The team's stream ends with TeamRunPaused: the chat shows the waiting call, and the next
    # message goes to the same session (which waits: refused with session_paused), not a new one.
    _manage(
        site,
        "shell",
        "-c",
        "from agents_app.models import Agent, AgentToolRequirement, Team, TeamMember; "
        "demo = Agent.objects.get(slug='demo'); "
        "careful, made = Agent.objects.get_or_create(slug='careful', defaults=dict(name='Careful', "
        "model=demo.model, tools=['calculator'])); "
        "AgentToolRequirement.objects.get_or_create(agent=careful, tool='calculator', requirement='confirmation'); "
        "desk, made = Team.objects.get_or_create(slug='desk', defaults=dict(name='Desk', model=demo.model, "
        "mode='coordinate')); "
        "made and TeamMember.objects.create(team=desk, agent=careful, order=0)",
    ).check_returncode()
    args = ["team:desk"] + (["--url", site["url"], "--token", site["token"]] if remote else [])
    child = _spawn_chat(site, *args)
    try:
        child.sendline("careful: what is 6*7?")
        screen = _until_prompt(child)
        assert "paused · run" in screen and 'calculator({"expression": "6*7"})' in screen, screen
        child.sendline("and now?")
        assert "refused: session_paused" in _until_prompt(child)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("agentos_run", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_agentos_run_json_whole_and_streamed(site):
    call_command("agentos_demo", stdout=io.StringIO())
    body = json.loads(_run("demo", "what is 6*7?", "--json"))
    assert (body["status"], body["content"]) == (
        "completed",
        "[offline demo model] I used my tools: calculator returned 42.",
    )

    with pytest.raises(CommandError, match=r"^unknown_session: "):  # a session of the agent, not of the team
        _run("team:demo-team", "hi", "--json", "--stream", "--session", body["session_id"])
    events = [json.loads(line) for line in _run("team:demo-team", "hi", "--json", "--stream").splitlines()]
    assert events[0]["event"] == "TeamRunStarted" and events[-1]["event"] == "TeamRunCompleted"
    assert [e["event_index"] for e in events] == list(range(len(events)))
    assert _run("demo", "what is 6*7?", "--stream") == "[offline demo model] I used my tools: calculator returned 42.\n"
    with pytest.raises(CommandError, match="No active agent, team or workflow is called 'nope'"):
        _run("nope", "hi")

    remote = json.loads(_run("Demo workflow", "hi", "--json", "--url", site["url"], "--token", site["token"]))
    assert remote["workflow_id"] == "demo-workflow" and remote["status"] == "completed"
    # A failed start over the API: the client's typed error, its code in the command's error.
    with pytest.raises(CommandError, match=r"^unknown_session: "):  # the workflow's session, not the agent's
        _run("demo", "hi", "--session", remote["session_id"], "--url", site["url"], "--token", site["token"])


@pytest.mark.django_db(transaction=True)
def test_agentos_run_of_a_paused_run_prints_no_null_and_says_what_it_waits_for(capsys):
    from agents_app.models import Agent, AgentToolRequirement, Team, TeamMember

    call_command("agentos_demo", stdout=io.StringIO())
    demo = Agent.objects.get(slug="demo")
    AgentToolRequirement.objects.create(agent=demo, tool="calculator", requirement="confirmation")
    desk = Team.objects.create(slug="desk", name="Desk", model=demo.model, mode="coordinate")
    TeamMember.objects.create(team=desk, agent=demo, order=0)

    for args in (("demo", "what is 6*7?"), ("team:desk", "demo: what is 6*7?", "--stream")):
        err = io.StringIO()
        out = io.StringIO()
        call_command("agentos_run", *args, stdout=out, stderr=err)  # exit status 0: no SystemExit
        assert out.getvalue().strip() == ""  # no answer yet, and not "null"
        assert re.match(r"paused: run " + UUID.pattern + r" waits for a decision on calculator \(call ", err.getvalue())
    with pytest.raises(CommandError, match="is not a session id"):
        call_command("agentos_run", "demo", "hi", "--session", "not-a-uuid")


def test_answers_render_as_markdown_with_panels_and_a_footer():
    console = Console(record=True, width=80, force_terminal=False)
    base = {"run_id": "r", "session_id": "s"}
    with AnswerView(console) as view:
        view({**base, "event": "RunStarted", "event_index": 0})
        view({**base, "event": "PreHookCompleted", "event_index": 1, "hook_name": "pii_filter"})
        view(
            {
                **base,
                "event": "ToolCallCompleted",
                "event_index": 2,
                "tool": {"tool_name": "calc", "tool_args": {}, "result": "4"},
            }
        )
        view({**base, "event": "RunContent", "event_index": 3, "content": "## Answer\n\n* **two** "})
        view({**base, "event": "RunContent", "event_index": 4, "content": "plus two"})
        metrics = {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8, "cost": 0.0012}
        view({**base, "event": "RunCompleted", "event_index": 5, "content": "…", "metrics": metrics})
    text = console.export_text()
    assert "hook pii_filter" in text and "calc({})" in text and "→ 4" in text
    assert "## Answer" not in text and "Answer" in text and "• two plus two" in text  # Markdown, rendered
    assert "tokens 5 in / 3 out (8) · cost 0.001200 · time" in text
