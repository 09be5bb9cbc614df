"""The chat page end to end: the real server (daphne, via runserver) on a temporary SQLite file,
driven by headless Chromium through Playwright: sign in, chat with streamed answers, reload and see
the history, reload in the middle of an answer and see it resume, stop an answer, on a phone-sized
screen; chat with a team and a workflow, their members and steps shown as lines beside the answer;
attach an image, see it sent to the model and shown again after a reload; Markdown answers
(sanitised, code blocks with Copy), dark mode, 390 px without sideways scrolling, rename / search /
delete conversations, the empty state's example prompts, a dropped socket mid-answer (nothing lost,
nothing twice), approving and rejecting a paused tool call. One server and one browser for the
module. With AGENTOS_SCREENSHOTS=1, the last test writes docs/images/chat-*.png (docs/chat.md).
Needs Debian's chromium (/usr/bin/chromium) and the playwright package; without them the test is
skipped, except in CI where it fails."""

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
        "from agents_app.models import Agent, AgentToolRequirement, ModelConfig, Workflow, WorkflowStep; "
        "User.objects.create_user('ada', password='ada-pass-123'); "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
        "model_id='m', max_retries=0); "
        "slow = Agent.objects.create(slug='slow', name='Slow', model=m); "
        "flow = Workflow.objects.create(slug='slow-flow', name='Slow flow'); "
        "WorkflowStep.objects.create(workflow=flow, order=0, name='ask', kind='agent', agent=slow); "
        "WorkflowStep.objects.create(workflow=flow, order=1, name='remember', kind='function', "
        "function='remember_output'); "
        "Agent.objects.filter(slug='demo').update(description='A friendly demo agent with a calculator.', "
        "example_prompts='What is 2+3?\\nTell me a joke\\n'); "
        "careful = Agent.objects.create(slug='careful', name='Careful', model=m, tools=['calculator']); "
        "AgentToolRequirement.objects.create(agent=careful, tool='calculator', requirement='confirmation'); "
        "hasty = Agent.objects.create(slug='hasty', name='Hasty', model=m, tools=['calculator'], "
        "approval_timeout_seconds=2); "
        "AgentToolRequirement.objects.create(agent=hasty, tool='calculator', requirement='confirmation'); "
        "from agents_app.models import Team, TeamMember; "
        "cdesk = Team.objects.create(slug='careful-desk', name='Careful desk', mode='coordinate', "
        "model=Agent.objects.get(slug='demo').model); "
        "TeamMember.objects.create(team=cdesk, agent=careful, order=0); "
        "cflow = Workflow.objects.create(slug='careful-flow', name='Careful flow'); "
        "WorkflowStep.objects.create(workflow=cflow, order=0, name='check', kind='agent', agent=careful); "
        "asker = Agent.objects.create(slug='asker', name='Asker', model=m, tools=['calculator', 'current_time']); "
        "AgentToolRequirement.objects.create(agent=asker, tool='calculator', requirement='user_input', "
        "user_input_fields=['expression']); "
        "AgentToolRequirement.objects.create(agent=asker, tool='current_time', requirement='external_execution')",
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
    page.wait_for_selector(".msg.assistant.completed .text", timeout=15_000)
    answer = (
        "[offline demo model] My team's answers, combined:\n\n## demo\n"
        "[offline demo model] I used my tools: calculator returned 5.\n\n## demo-writer\n"
        f'[offline demo model] You said: "what is 2+3?". {OFFLINE_TAIL}'
    )
    assert page.locator(".msg.assistant .text h2").all_inner_texts() == ["demo", "demo-writer"]  # Markdown
    assert page.locator(".msg.assistant .text p").all_inner_texts() == [
        "[offline demo model] My team's answers, combined:",
        "[offline demo model] I used my tools: calculator returned 5.",
        f'[offline demo model] You said: "what is 2+3?". {OFFLINE_TAIL}',
    ]
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
    assert page.locator(".msg.assistant .text h2").all_inner_texts() == ["demo", "demo-writer"]
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


# ---- Markdown, dark mode, the phone width, conversations, reconnects, approvals --------------------

MARKDOWN = (
    "## Plan\n\nSteps:\n\n- **one**\n- two\n\n```python\nprint('hi')\n```\n\n"
    'Bad: <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    " [click](javascript:window.__pwned=3) and [docs](https://example.com/docs).\n"
)


def _scroll_width(page: Any) -> int:
    """How wide the page is (390 on a 390 px phone, unless something sticks out: named then)."""
    width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    if width > page.viewport_size["width"]:
        wide = page.evaluate(
            """[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > innerWidth)
            .map((e) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""
        )
        print("sticking out:", wide)
    return width


def test_markdown_answers_are_rendered_sanitised_with_copy_buttons(site, browser, scripted_model):
    scripted_model.push_text(MARKDOWN, chunk_delay=0.03)
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:slow")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "make a plan")
    page.keyboard.press("Enter")
    # Rendered while it streams, not only at the end.
    page.wait_for_selector(".msg.assistant.streaming .text h2", timeout=10_000)
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)

    def check() -> None:
        text = page.locator(".msg.assistant .text")
        assert text.locator("h2").all_inner_texts() == ["Plan"]
        assert text.locator("li").all_inner_texts() == ["one", "two"]
        assert text.locator("li strong").all_inner_texts() == ["one"]
        assert text.locator("pre code").inner_text() == "print('hi')\n"
        assert text.locator(".code-head .code-lang").inner_text() == "python"
        # Sanitised: no script, no event handler, no javascript: link; the page's script never ran it.
        assert text.locator("script").count() == 0
        assert page.evaluate("window.__pwned") is None
        html = text.inner_html()
        assert "onerror" not in html and "javascript:" not in html
        assert text.locator("a", has_text="click").get_attribute("href") is None
        docs = text.locator("a", has_text="docs")
        assert docs.get_attribute("href") == "https://example.com/docs"
        assert docs.get_attribute("rel") == "noopener noreferrer nofollow"

    check()
    page.get_by_role("button", name="Copy python code").click()
    page.wait_for_selector(".code-head .copy >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"

    page.reload()  # the stored answer is rendered the same way
    page.wait_for_selector(".msg.assistant.completed .text h2")
    check()
    context.close()


@pytest.mark.parametrize(("scheme", "background"), [("light", "rgb(246, 247, 249)"), ("dark", "rgb(15, 19, 24)")])
def test_dark_mode_follows_the_system_and_390_px_never_scroll_sideways(
    site, browser, scripted_model, scheme, background
):
    long_line = "x" * 300
    scripted_model.push_text(f"A long line:\n\n```\n{long_line}\n```\n\nand {long_line} too")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, color_scheme=scheme
    )
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:demo")
    page.wait_for_selector(".intro .example")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
    assert _scroll_width(page) <= 390
    page.select_option("#agent", "agent:slow")
    page.fill("#message", "a long one")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.completed .text pre", timeout=10_000)
    assert _scroll_width(page) <= 390  # the code block scrolls inside itself
    box = page.locator(".msg.assistant .code-block").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.click("#toggle-sessions")
    page.wait_for_selector("#session-search", state="visible")
    assert _scroll_width(page) <= 390
    context.close()


def test_the_empty_state_offers_the_admins_example_prompts(site, browser):
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:demo")
    page.wait_for_selector("#conn.ok")
    intro = page.locator(".intro")
    assert "A friendly demo agent with a calculator." in intro.inner_text()
    examples = page.get_by_role("list", name="Example prompts").get_by_role("button")
    assert examples.all_inner_texts() == ["What is 2+3?", "Tell me a joke"]
    examples.first.click()  # sends it
    page.wait_for_selector(".msg.assistant.completed .text", timeout=10_000)
    assert page.locator(".msg.user .text").all_inner_texts() == ["What is 2+3?"]
    assert page.locator(".intro").count() == 0
    context.close()


def test_rename_search_and_delete_conversations_with_the_keyboard(site, browser):
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.goto(site + "/chat/?agent=demo-writer")
    page.wait_for_selector("#conn.ok")
    for text in ("first about lisbon", "second about porto"):
        page.click("#new-session")
        page.fill("#message", text)
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
        page.wait_for_selector("#session-list .session.current")
    assert page.locator("#session-list .session").all_inner_texts() == ["second about porto", "first about lisbon"]

    # Rename the first one, from the keyboard: its ✎ button, type, Enter.
    page.get_by_role("button", name="Rename first about lisbon").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type("Trip to Lisbon")
    page.keyboard.press("Enter")
    page.wait_for_selector("#session-list .session >> text=Trip to Lisbon")
    assert page.evaluate("document.activeElement.textContent") == "Trip to Lisbon"
    # Escape leaves a rename unchanged.
    page.get_by_role("button", name="Rename second about porto").click()
    page.keyboard.type("never saved")
    page.keyboard.press("Escape")
    # (a rename counts as a change: the renamed one is now the most recent)
    assert page.locator("#session-list .session").all_inner_texts() == ["Trip to Lisbon", "second about porto"]
    names = {s["name"] for s in page.evaluate("fetch('/api/sessions/').then((r) => r.json())")["results"]}
    assert {"Trip to Lisbon", "second about porto"} <= names

    # Search: by name, and by what was asked.
    page.fill("#session-search", "lisbon")
    page.wait_for_function("document.querySelectorAll('#session-list .session').length === 1")
    assert page.locator("#session-list .session").all_inner_texts() == ["Trip to Lisbon"]
    page.fill("#session-search", "PORTO")
    page.wait_for_function("document.querySelector('#session-list .session')?.textContent === 'second about porto'")
    page.fill("#session-search", "madrid")
    page.wait_for_selector("#session-empty:not([hidden])")
    assert page.inner_text("#session-empty") == "No conversation matches “madrid”."
    page.fill("#session-search", "")
    page.wait_for_function("document.querySelectorAll('#session-list .session').length === 2")

    # Delete the open one (it is the current conversation): a confirmation, then a new chat.
    current = page.get_attribute("#session-list .session.current", "data-session-id")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete second about porto").click()
    page.wait_for_function("document.querySelectorAll('#session-list .session').length === 1")
    assert page.locator("#session-list .session").all_inner_texts() == ["Trip to Lisbon"]
    assert page.locator(".msg").count() == 0 and page.locator(".intro").count() == 1
    assert "session=" not in page.url
    assert page.evaluate(f"fetch('/api/sessions/{current}/').then((r) => r.status)") == 404
    # Dismissing the confirmation deletes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete Trip to Lisbon").click()
    assert page.locator("#session-list .session").all_inner_texts() == ["Trip to Lisbon"]
    context.close()


# Every socket the page opens, so a test can drop one as a network would.
_RECORD_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
})();
"""

# Every text the streaming answer shows, as it changes.
_WATCH_ANSWER = """
(() => {
  window.__seen = [];
  new MutationObserver(() => {
    const text = document.querySelector('.msg.assistant .text');
    if (text && text.textContent.trim()) window.__seen.push(text.textContent.trim());
  }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
})()
"""


def test_a_dropped_socket_mid_answer_resumes_with_nothing_lost_or_repeated(site, browser, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 21))
    scripted_model.push_text(words, chunk_delay=0.12)
    context = browser.new_context()
    context.add_init_script(_RECORD_SOCKETS)
    page = context.new_page()
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    _sign_in(page, site)
    page.select_option("#agent", "agent:slow")
    page.wait_for_selector("#conn.ok")
    page.evaluate(_WATCH_ANSWER)
    page.fill("#message", "count slowly")
    page.click("#send")
    page.wait_for_function("document.querySelector('.msg.assistant .text').textContent.includes('word4')")
    opened = page.evaluate("window.__sockets.length")
    page.evaluate("window.__sockets.at(-1).close()")  # the connection drops mid-answer
    page.wait_for_selector("#conn:not(.ok)")
    page.wait_for_selector(".msg.assistant.completed", timeout=15_000)
    assert page.evaluate("window.__sockets.length") == opened + 1  # one new connection
    assert any('"type": "resume"' in frame or '"type":"resume"' in frame for frame in sent)
    assert page.inner_text(".msg.assistant .text") == words
    seen = page.evaluate("window.__seen")
    assert len(seen) > 5
    assert all(words.startswith(text) for text in seen), [t for t in seen if not words.startswith(t)][:3]
    assert page.evaluate("document.querySelectorAll('.msg.assistant').length") == 1
    context.close()


def test_approving_and_rejecting_a_paused_tool_call_on_the_page(site, browser, scripted_model):
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+3"}, "id": "k1"}])
    scripted_model.push_text("It is **5**.")
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:careful")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "add 2 and 3")
    page.keyboard.press("Enter")
    approval = page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    assert 'calculator({"expression":"2+3"})' in approval.inner_text()
    assert len(scripted_model.requests) == 1  # the tool waits; the model is not asked again yet

    page.reload()  # a paused run shows its decision again after a reload
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    page.get_by_role("button", name="Approve: calculator").click()
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    assert page.locator(".msg.assistant .approval").count() == 0
    assert page.inner_text(".msg.assistant .text strong") == "5"
    assert page.inner_text(".msg.assistant .tool") == 'calculator({"expression":"2+3"}) → 5'
    tool_message = scripted_model.requests[-1]["messages"][-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", "5")
    stored = _stored_session(page)
    assert [r["status"] for r in stored["runs"]] == ["completed"]

    # Rejected, with a note: the tool never runs and the model hears why.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "k2"}])
    scripted_model.push_text("Fine, I will not.")
    page.fill("#message", "multiply 6 by 7")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    page.get_by_label("Note (optional; told to the model if you reject)").fill("do it by hand")
    page.get_by_role("button", name="Reject: calculator").click()
    page.wait_for_function("document.querySelectorAll('.msg.assistant.completed').length === 2", timeout=10_000)
    last = page.locator(".msg.assistant").nth(1)
    assert last.locator(".text").inner_text() == "Fine, I will not."
    assert (
        last.locator(".tool").inner_text() == 'calculator({"expression":"6*7"}) ✗ Rejected by the user: do it by hand'
    )
    told = scripted_model.requests[-1]["messages"][-1]
    assert told["role"] == "tool" and "do it by hand" in told["content"]
    context.close()


def test_a_workflow_whose_step_pauses_shows_approve_and_goes_on(site, browser, scripted_model):
    # The step's agent pauses: the workflow's stream ends with WorkflowPaused, and its continuation
    # starts with StepContinued; the page shows the decision and goes on as for an agent.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "4*5"}, "id": "w1"}])
    scripted_model.push_text("It is 20.")
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "workflow:careful-flow")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "multiply 4 by 5")
    page.keyboard.press("Enter")
    approval = page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    assert 'calculator({"expression":"4*5"})' in approval.inner_text()
    page.get_by_role("button", name="Approve: calculator").focus()  # with the keyboard
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    # The decision's box is gone; the keyboard's place stays on the answer, not the page's start.
    assert page.evaluate("document.activeElement.classList.contains('assistant')")
    assert page.locator(".msg.assistant .approval").count() == 0
    assert page.inner_text(".msg.assistant .text") == "It is 20."
    tool_message = scripted_model.requests[-1]["messages"][-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", "20")
    stored = _stored_session(page)
    assert [r["status"] for r in stored["runs"] if r["parent_run_id"] is None] == ["completed"]
    context.close()


def test_a_team_whose_member_pauses_shows_approve_and_goes_on(site, browser, scripted_model):
    # The member's call waits: the team's stream ends with TeamRunPaused; approving resumes the
    # member, then the (offline) leader answers with what the member said.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "3*3"}, "id": "t1"}])
    scripted_model.push_text("It is 9.")
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "team:careful-desk")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "careful: what is 3*3?")
    page.keyboard.press("Enter")
    approval = page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    assert 'calculator({"expression":"3*3"})' in approval.inner_text()
    page.reload()  # the paused team shows its decision again
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    page.fill("#message", "and another thing")  # the session waits: refused, said plainly
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.failed .status")
    assert page.inner_text(".msg.assistant.failed .status").startswith(
        "This conversation waits for your decision on a tool call above"
    )
    page.get_by_role("button", name="Approve: calculator").click()
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    assert page.locator(".msg.assistant .approval").count() == 0
    assert "It is 9." in page.inner_text(".msg.assistant .text")
    tool_message = scripted_model.requests[-1]["messages"][-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", "9")
    stored = _stored_session(page)
    assert sorted(r["status"] for r in stored["runs"]) == ["completed", "completed"]
    context.close()


def test_a_decision_on_a_run_that_expired_meanwhile_shows_its_end(site, browser, scripted_model):
    # Approving after the timeout: the continue is refused (run_not_paused); the page does not offer
    # the decision again but shows what became of the run (expired, its tool never run).
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "1+1"}, "id": "e1"}])
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:hasty")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "add 1 and 1")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    page.wait_for_timeout(2500)  # past the agent's approval timeout
    page.get_by_role("button", name="Approve: calculator").click()
    page.wait_for_selector(".msg.assistant.failed", timeout=10_000)
    assert page.locator(".msg.assistant .approval").count() == 0
    assert "paused" not in page.get_attribute(".msg.assistant", "class")
    assert "Nobody decided on its tool calls in time" in page.inner_text(".msg.assistant .status")
    assert len(scripted_model.requests) == 1  # the model was not asked again; the tool never ran
    context.close()


def test_user_input_and_an_external_result_are_sent_from_the_page(site, browser, scripted_model):
    scripted_model.push_tool_calls(
        [
            {"name": "calculator", "arguments": {}, "id": "u1"},  # the user fills the expression
            {"name": "current_time", "arguments": {"timezone": "UTC"}, "id": "x1"},  # the client runs it
        ]
    )
    scripted_model.push_text("Done.")
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:asker")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "compute and tell the time")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    assert page.locator(".approval-tool").count() == 2
    # Approving without the result is refused on the page; nothing is sent yet.
    page.get_by_role("button", name="Send result: current_time").click()
    assert page.inner_text(".approval-error") == "Write the tool's result first."
    page.get_by_label("expression").fill("6*7")
    page.get_by_role("button", name="Approve: calculator").click()
    assert page.inner_text(".approval-tool[data-tool-call-id=u1] .decided") == "approved"
    assert page.locator(".msg.assistant.paused").count() == 1  # one call still waits
    page.get_by_label("Result (you ran this tool; the model gets what you write here)").fill("12:00 UTC")
    page.get_by_role("button", name="Send result: current_time").click()
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    assert page.inner_text(".msg.assistant .text") == "Done."
    told = {m["tool_call_id"]: m["content"] for m in scripted_model.requests[-1]["messages"] if m["role"] == "tool"}
    assert told == {"u1": "42", "x1": "12:00 UTC"}
    context.close()


def test_every_control_has_a_name_a_screen_reader_reads(site, browser):
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site)
    page.select_option("#agent", "agent:demo")
    page.fill("#message", "hi")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    page.wait_for_function("document.querySelector('#announce').textContent.startsWith('Answer: ')")
    nameless = page.evaluate(
        """[...document.querySelectorAll('button, input:not([type=hidden]), textarea, select, [role=log]')]
        .filter((e) => !(e.getAttribute('aria-label') || (e.labels && [...e.labels].some((l) => l.textContent.trim()))
                         || (e.tagName === 'BUTTON' && e.textContent.trim())))
        .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert nameless == []
    assert page.get_attribute("#messages", "role") == "log"
    assert page.get_attribute("#announce", "aria-live") == "polite"
    context.close()


SCREENSHOT_ANSWER = (
    "Open it with a `with` block, so the file is closed even when something fails:\n\n"
    '```python\nfrom pathlib import Path\n\nwith Path("notes.txt").open(encoding="utf-8") as f:\n'
    "    for line in f:\n        print(line.rstrip())\n```\n\n"
    "- `Path.read_text()` reads it **all at once**;\n- a loop reads it line by line, for large files.\n"
)


@pytest.mark.skipif(not os.environ.get("AGENTOS_SCREENSHOTS"), reason="AGENTOS_SCREENSHOTS=1 writes docs/images")
def test_screenshots_for_the_docs(site, browser, scripted_model):
    """docs/images/chat-{1280,390}-{light,dark}.png and chat-approval-1280-light.png, shown in
    docs/chat.md: run with
    `AGENTOS_SCREENSHOTS=1 pytest tests/test_chat_browser.py -k screenshots`."""
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _sign_in(page, site)
    page.goto(site + "/chat/?agent=slow")
    page.wait_for_selector("#conn.ok")
    for question, answer in (
        ("Plan a weekend in Lisbon", "Day one: Alfama and a tram ride; day two: Belém."),
        ("How do I read a file in Python?", SCREENSHOT_ANSWER),
    ):
        scripted_model.push_text(answer)
        page.click("#new-session")
        page.fill("#message", question)
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant.completed", timeout=10_000)
    url = page.url
    context.close()
    for width, height in ((1280, 800), (390, 844)):
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=scheme, device_scale_factor=1
            )
            page = context.new_page()
            _sign_in(page, site)
            page.goto(url)
            page.wait_for_selector(".msg.assistant.completed .code-block")
            page.wait_for_selector("#session-list .session.current", state="attached")  # (a drawer on a phone)
            page.wait_for_selector("#conn.ok")
            page.screenshot(path=str(out / f"chat-{width}-{scheme}.png"))
            context.close()
    # A paused run waiting for a decision.
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "1299*0.15"}, "id": "s1"}])
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    page = context.new_page()
    _sign_in(page, site)
    page.goto(site + "/chat/?agent=careful")
    page.wait_for_selector("#conn.ok")
    page.fill("#message", "What is 15% of 1299?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.paused .approval", timeout=10_000)
    page.screenshot(path=str(out / "chat-approval-1280-light.png"))
    context.close()
