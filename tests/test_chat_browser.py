"""The chat page end to end: the real server (daphne, via runserver) on a temporary SQLite file,
driven by headless Chromium through Playwright: sign in, chat with streamed answers, reload and see
the history, reload in the middle of an answer and see it resume, stop an answer, on a phone-sized
screen. Needs Debian's chromium (/usr/bin/chromium) and the playwright package; without them the
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

from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _needs_a_browser() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test, but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[str]:
    db = tmp_path_factory.mktemp("chat") / "chat.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
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
        "from django.contrib.auth.models import User; from agents_app.models import Agent, ModelConfig; "
        "User.objects.create_user('ada', password='ada-pass-123'); "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
        "model_id='m', max_retries=0); "
        "Agent.objects.create(slug='slow', name='Slow', model=m)",
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
    page.select_option("#agent", "demo")
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
    page.select_option("#agent", "slow")
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
