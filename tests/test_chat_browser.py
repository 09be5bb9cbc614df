"""The chat page end to end: the real server (daphne, via runserver) on a temporary SQLite file,
driven by headless Chromium through Playwright: sign in, chat with streamed answers, reload and see
the history, reload in the middle of an answer and see it resume, stop an answer, on a phone-sized
screen; chat with a team and a workflow, their members and steps shown as lines beside the answer;
attach an image, see it sent to the model and shown again after a reload. Needs Debian's chromium (/usr/bin/chromium) and the playwright package; without them the
test is skipped, except in CI where it fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _needs_a_browser() -> None:
    require_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[str]:
    db = tmp_path_factory.mktemp("chat") / "chat.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "DJANGO_MEDIA_ROOT": str(db.parent / "media"),  # images sent from the page
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("REDIS_URL", None)  # one server process: the embedded in-memory layer

    def manage(*args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)

    # One process for the set-up: migrate, the demo agent, a user, and an agent on the scripted model.
    manage(
        "shell",
        "-c",
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "call_command('agentos_demo'); "
        "from django.contrib.auth.models import User; "
        "from agents_app.models import Agent, ModelConfig, Workflow, WorkflowStep; "
        "User.objects.create_user('ada', password='ada-pass-123'); "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
        "model_id='m', max_retries=0); "
        "slow = Agent.objects.create(slug='slow', name='Slow', model=m); "
        "flow = Workflow.objects.create(slug='slow-flow', name='Slow flow'); "
        "WorkflowStep.objects.create(workflow=flow, order=0, name='ask', kind='agent', agent=slow); "
        "WorkflowStep.objects.create(workflow=flow, order=1, name='remember', kind='function', "
        "function='remember_output')",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(
        [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        probe_url=base + "/chat/login/",
    ):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _sign_in(page: Any, base: str) -> None:
    page.goto(base + "/chat/")
    assert "/chat/login/" in page.url  # not signed in: the login page, then back
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "ada-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/chat/(\?.*)?$"))
    page.wait_for_selector("#conn.ok")


def test_chat_streams_and_the_history_survives_a_reload(site, browser):
    context = browser.new_context()
    page = context.new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    _sign_in(page, site)
    page.select_option("#agent", "agent:demo")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "hello there, how are you?")
    page.keyboard.press("Enter")
    answer = page.wait_for_selector(".msg.assistant.completed .text", timeout=10_000).inner_text()
    assert answer.startswith("[offline demo model]")
    assert sum('"RunContent"' in f for f in frames) > 5  # it arrived token by token
    assert "session=" in page.url
    page.wait_for_selector("#session-list .session.current")

    page.reload()
    page.wait_for_selector(".msg.assistant.completed .text")
    assert page.locator(".msg.user .text").all_inner_texts() == ["hello there, how are you?"]
    assert page.locator(".msg.assistant .text").all_inner_texts() == [answer]
    assert page.locator("#session-list .session").count() == 1
    context.close()


def test_a_reload_mid_answer_resumes_and_stop_works_on_a_phone(site, browser, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 16))
    scripted_model.push_text(words, chunk_delay=0.15)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:slow")
    page.wait_for_selector("#conn.ok")
    assert page.is_visible("#toggle-sessions") and not page.is_visible("#new-session")  # the drawer is closed
    page.fill("#message", "count for me")
    page.click("#send")
    page.wait_for_function("document.querySelector('.msg.assistant .text').textContent.includes('word3')")
    assert page.is_visible("#stop")

    page.reload()  # mid-answer
    page.wait_for_selector(".msg.assistant.completed .text", timeout=10_000)
    assert page.locator(".msg.assistant .text").all_inner_texts() == [words]
    assert page.locator(".msg.user .text").all_inner_texts() == ["count for me"]
    assert not page.is_visible("#stop")

    scripted_model.push_text("this answer will be stopped early " * 4, chunk_delay=0.15)
    page.fill("#message", "say a lot")
    page.click("#send")
    page.wait_for_function(
        "document.querySelectorAll('.msg.assistant')[1]?.querySelector('.text').textContent.includes('will')"
    )
    page.click("#stop")
    stopped = page.wait_for_selector(".msg.assistant.cancelled", timeout=5_000)
    assert "Stopped." in stopped.inner_text()
    partial = stopped.query_selector(".text").inner_text()
    assert partial.startswith("this answer") and len(partial) < len("this answer will be stopped early " * 4)

    page.click("#toggle-sessions")  # the conversations drawer opens on a phone
    page.wait_for_selector("#new-session", state="visible")
    assert page.locator("#session-list .session").count() == 1
    context.close()


OFFLINE_TAIL = (
    "I am a built-in offline model for demos and tests; configure a real model in the admin for real answers."
)


def _stored_session(page: Any) -> dict[str, Any]:
    """The session the page shows, read back through the sessions API with the page's cookies."""
    session_id = re.search(r"session=([0-9a-f-]{36})", page.url).group(1)
    return page.evaluate(f"fetch('/api/sessions/{session_id}/').then((r) => r.json())")


def _lines(page: Any) -> list[str]:
    return page.locator(".msg.assistant .part .part-label").all_inner_texts()


def test_chat_with_a_team_shows_members_as_lines_and_its_answer(site, browser):
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.goto(site + "/chat/?team=demo-team")
    page.wait_for_selector("#conn.ok")
    assert page.input_value("#agent") == "team:demo-team"
    intro = page.inner_text(".intro")
    assert "Demo team" in intro and "Demo agent" in intro and "Demo writer" in intro
    page.fill("#message", "what is 2+3?")
    page.keyboard.press("Enter")
    answer = page.wait_for_selector(".msg.assistant.completed .text", timeout=15_000).inner_text()
    assert answer == (
        "[offline demo model] My team's answers, combined:\n\n## demo\n"
        "[offline demo model] I used my tools: calculator returned 5.\n\n## demo-writer\n"
        f'[offline demo model] You said: "what is 2+3?". {OFFLINE_TAIL}'
    )
    assert page.locator(".intro").count() == 0
    assert sorted(_lines(page)) == ["Demo agent", "Demo writer"]
    assert page.locator(".msg.assistant .part.completed").count() == 2
    assert page.locator(".msg.assistant .tool").count() == 0  # the members' tools stay on their lines
    assert "team=demo-team" in page.url

    stored = _stored_session(page)
    assert stored["team_id"] == "demo-team" and stored["agent_id"] is None
    top = [r for r in stored["runs"] if r["parent_run_id"] is None]
    assert [(r["team_id"], r["status"], r["content"]) for r in top] == [("demo-team", "completed", answer)]
    members = sorted(r["agent_id"] for r in stored["runs"] if r["parent_run_id"] == top[0]["run_id"])
    assert members == ["demo", "demo-writer"]
    page.wait_for_selector(f"#session-list .session.current[data-session-id='{stored['session_id']}']")

    page.click(".msg.assistant .part summary >> text=Demo agent")  # a member's line opens its text
    opened = page.wait_for_selector(".msg.assistant .part[open] .part-text")
    assert opened.inner_text() == "[offline demo model] I used my tools: calculator returned 5."

    page.reload()
    page.wait_for_selector(".msg.assistant.completed .text")
    assert page.locator(".msg.assistant .text").all_inner_texts() == [answer]
    assert page.locator(".msg.user .text").all_inner_texts() == ["what is 2+3?"]
    page.wait_for_function("document.querySelectorAll('.msg.assistant .part.completed').length === 2")
    assert sorted(_lines(page)) == ["Demo agent", "Demo writer"]
    context.close()


def test_a_workflow_streams_its_steps_and_a_reload_mid_run_resumes_it(site, browser, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 16))
    scripted_model.push_text(words, chunk_delay=0.15)
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "workflow:slow-flow")
    page.wait_for_selector("#conn.ok")
    assert "workflow=slow-flow" in page.url
    assert page.locator(".intro ol li").all_inner_texts() == ["ask", "remember"]
    page.fill("#message", "count for me")
    page.click("#send")
    page.wait_for_function(
        "document.querySelector('.msg.assistant .part.running .part-text')?.textContent.includes('word3')"
    )
    assert _lines(page) == ["step 1: ask · Slow"]
    assert page.inner_text(".msg.assistant .text") == ""  # the step's words are not the answer
    assert page.is_visible("#stop")

    page.reload()  # mid-run: the workflow's stream replays from its start and goes on
    page.wait_for_selector(".msg.assistant.completed .text", timeout=15_000)
    assert page.locator(".msg.assistant .text").all_inner_texts() == [words]
    assert _lines(page) == ["step 1: ask · Slow", "step 2: remember"]
    assert page.locator(".msg.assistant .part.completed").count() == 2
    assert not page.is_visible("#stop")

    stored = _stored_session(page)
    top = [r for r in stored["runs"] if r["parent_run_id"] is None]
    assert [(r["workflow_id"], r["status"], r["content"]) for r in top] == [("slow-flow", "completed", words)]
    steps = [r for r in stored["runs"] if r["parent_run_id"] == top[0]["run_id"]]
    assert [(r["agent_id"], r["content"]) for r in steps] == [("slow", words)]
    assert stored["state"] == {"last_output": words}
    context.close()


def test_an_attached_image_reaches_the_model_and_shows_in_the_history(site, browser, scripted_model, tmp_path):
    from tests.test_images import PDF, data_url, png

    image, other = tmp_path / "red.png", tmp_path / "notes.pdf"
    image.write_bytes(png(8, 8))
    other.write_bytes(PDF)
    scripted_model.push_text("A red square.")
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:slow")
    page.wait_for_selector("#conn.ok")
    page.set_input_files("#attach", [str(image), str(other)])  # the PDF is refused on the page
    assert page.inner_text("#notice") == "Not attached: notes.pdf: not one of png, jpeg, gif, webp."
    assert page.locator("#attachments .attachment img").count() == 1  # the preview
    page.fill("#message", "what colour is this?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.completed .text", timeout=10_000)
    assert page.locator("#attachments .attachment").count() == 0 and not page.is_visible("#attachments")
    sent = scripted_model.requests[-1]["messages"][-1]["content"]
    assert sent == [
        {"type": "text", "text": "what colour is this?"},
        {"type": "image_url", "image_url": {"url": data_url(png(8, 8))}},
    ]
    assert page.locator(".msg.user .images img").count() == 1

    page.reload()  # the history shows the stored image, served to its owner by the API
    page.wait_for_selector(".msg.assistant.completed .text")
    page.wait_for_function("document.querySelector('.msg.user .images img')?.naturalWidth === 8")
    src = page.get_attribute(".msg.user .images img", "src")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/runs/[0-9a-f-]{36}/images/0", src), src
    assert page.locator(".msg.user .text").all_inner_texts() == ["what colour is this?"]
    context.close()
