"""Server-Sent Events as a browser consumes them: headless Chromium (Playwright) against the real
server (daphne, via runserver) on a temporary SQLite file, signed in with the Django session cookie.

- `new EventSource("/api/runs/<id>/events?after_event_index=-1")` (EventSource sends
  `Accept: text/event-stream` and cookies, and cannot send an Authorization header) gets every event
  of a finished run, in order, and of a run still going, live;
- the browser's own reconnect: it sends the last `id:` back as `Last-Event-ID` and gets the rest,
  not a replay; after the terminal event its reconnect gets a 204 and it stops for good;
- the POST streams (`/api/agents/{id}/runs`, agno's `/os/agents/{id}/runs`), which EventSource
  cannot call (it only GETs): `fetch()` with `Accept: text/event-stream`, the body read as it
  streams. (No `/os` route streams on a GET: agno's run routes are POSTs.)

Needs Debian's chromium (/usr/bin/chromium) and the playwright package; without them the test is
skipped, except in CI where it fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.conftest import BOOKKEEPING_EVENTS, parse_sse, without_bookkeeping
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e5" * 20  # ada's REST token, to start runs from the test (the page uses its session cookie)
TERMINAL = ["RunCompleted", "RunError", "RunCancelled"]
# Names a stream may hold besides the run's own: the end notice and an error frame.
EXTRA_NAMES = ["RunEnded", "Error", "message"]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _needs_a_browser() -> None:
    require_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[str]:
    db = tmp_path_factory.mktemp("sse") / "sse.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("REDIS_URL", None)  # one server process: the embedded in-memory layer
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.core.management import call_command; call_command('migrate', verbosity=0); "
            "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
            "from agents_app.models import Agent, ModelConfig; "
            "u = User.objects.create_user('ada', password='ada-pass-123'); "
            f"Token.objects.create(user=u, key='{TOKEN}'); "
            f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
            "model_id='m', max_retries=0); "
            "Agent.objects.create(slug='slow', name='Slow', model=m)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
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


@pytest.fixture
def page(site: str, browser: Any) -> Iterator[Any]:
    """A page signed in as ada (a Django session cookie, nothing else), on a page of the site."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(site + "/chat/")
    assert "/chat/login/" in page.url
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "ada-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/chat/(\?.*)?$"))
    assert any(c["name"] == "sessionid" for c in context.cookies())
    yield page
    context.close()


def _api() -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def _finished_run(site: str, scripted_model: Any, words: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """A streamed run of `slow` that has ended, and its events as a plain HTTP client replays them."""
    scripted_model.push_text(words)
    with _api() as api:
        streamed = parse_sse(api.post(f"{site}/api/agents/slow/runs", json={"message": "count", "stream": True}).text)
        run_id = streamed[0][1]["run_id"]
        replay = parse_sse(api.get(f"{site}/api/runs/{run_id}/events").text)
    assert replay == streamed and (replay[-1][0], replay[-1][1]["content"]) == ("RunCompleted", words)
    return run_id, replay


# In the page: an EventSource on `url`, a listener for each of `names`; `window.got` collects
# {name, id (the browser's lastEventId), t (ms), data}. With `closeOnTerminal`, the client's job
# done right: close on the terminal event and resolve with what arrived (an error before it rejects).
OPEN_EVENT_SOURCE = """
([url, names, terminal, closeOnTerminal]) => new Promise((resolve, reject) => {
  const es = new EventSource(url);
  window.es = es;
  window.got = [];
  window.opens = 0;
  es.onopen = () => { window.opens += 1; };
  for (const name of names) {
    es.addEventListener(name, (e) => {
      window.got.push({name, id: e.lastEventId, t: performance.now(), data: JSON.parse(e.data)});
      if (closeOnTerminal && terminal.includes(name)) { es.close(); resolve(window.got); }
    });
  }
  es.onerror = () => {
    if (closeOnTerminal) { es.close(); reject(new Error(`stream failed after ${window.got.length} events`)); }
  };
  if (!closeOnTerminal) resolve(null);
})
"""


def _names(replay: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return sorted({name for name, _ in replay} | set(TERMINAL) | set(EXTRA_NAMES))


def _check_run_stream(got: list[dict[str, Any]], replay: list[tuple[str, dict[str, Any]]], words: str) -> None:
    """Every event once, in order, with consecutive indexes and matching ids; the words add up."""
    assert [(g["name"], g["data"]) for g in got] == replay
    assert [g["data"]["event_index"] for g in got] == list(range(len(replay)))
    assert [g["id"] for g in got] == [str(i) for i in range(len(replay))]
    assert "".join(g["data"]["content"] for g in got if g["name"] == "RunContent") == words
    assert (got[-1]["name"], got[-1]["data"]["content"]) == ("RunCompleted", words)


def test_an_event_source_gets_a_finished_run_in_order(site, page, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 11))
    run_id, replay = _finished_run(site, scripted_model, words)
    accepts: list[str | None] = []
    page.on("request", lambda r: accepts.append(r.headers.get("accept")) if "/events" in r.url else None)
    url = f"/api/runs/{run_id}/events?after_event_index=-1"
    got = page.evaluate(OPEN_EVENT_SOURCE, [url, _names(replay), TERMINAL, True])
    _check_run_stream(got, replay, words)
    assert accepts == ["text/event-stream"]
    assert page.evaluate("window.es.readyState") == 2  # closed by the client, on the terminal event


def test_the_browsers_own_reconnect_resumes_by_last_event_id_then_stops_on_a_204(site, page, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 11))
    run_id, replay = _finished_run(site, scripted_model, words)
    routed: list[str] = []
    answered: list[int] = []

    def cut_the_first_stream(route: Any, request: Any) -> None:
        # The first answer ends after three events, as a dropped connection would: the browser
        # reconnects by itself. A short `retry:` so that it does so within the test's patience.
        routed.append(request.url)
        if len(routed) > 1:
            route.continue_()
            return
        real = route.fetch()
        assert real.status == 200
        first_three = "\n\n".join(real.text().split("\n\n")[:3])
        route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=f"retry: 300\n\n{first_three}\n\n"
        )

    page.route(re.compile(r"/api/runs/[0-9a-f-]+/events"), cut_the_first_stream)
    page.on("response", lambda r: answered.append(r.status) if "/events" in r.url else None)
    # The headers as the network stack sent them (Playwright's request objects lack Last-Event-ID).
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    urls: dict[str, str] = {}
    raw_headers: dict[str, dict[str, str]] = {}  # (CDP sends these two in either order)
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.requestWillBeSentExtraInfo", lambda e: raw_headers.__setitem__(e["requestId"], e["headers"]))
    url = f"/api/runs/{run_id}/events?after_event_index=-1"
    page.evaluate(OPEN_EVENT_SOURCE, [url, _names(replay), TERMINAL, False])  # a client that never closes
    page.wait_for_function("window.es.readyState === 2", timeout=15_000)  # the browser gave up by itself
    got = page.evaluate("window.got")
    _check_run_stream(got, replay, words)  # the reconnect resumed after event 2: nothing twice
    sent = [headers for rid, headers in raw_headers.items() if "/events" in urls.get(rid, "")]
    last = str(len(replay) - 1)
    assert answered == [200, 200, 204], answered
    # The two reconnects, as sent (the first request went through the test's route.fetch, not the
    # page's network stack): the session cookie and no Authorization header; the last id it saw.
    assert [h.get("Last-Event-ID") for h in sent] == ["2", last], sent
    assert all("sessionid=" in h["Cookie"] and "Authorization" not in h for h in sent)
    assert page.evaluate("window.opens") == 2
    page.wait_for_timeout(1_000)  # and it stays closed: no more requests
    assert len(routed) == 3


def test_an_event_source_follows_a_run_still_going_live(site, page, scripted_model):
    words = " ".join(f"word{i}" for i in range(1, 21))
    scripted_model.push_text(words, chunk_delay=0.1)
    first_frame = threading.Event()
    poster: list[tuple[str, dict[str, Any]]] = []

    def post_and_read() -> None:  # a plain HTTP client that starts the run and reads its stream
        with (
            _api() as api,
            api.stream("POST", f"{site}/api/agents/slow/runs", json={"message": "count", "stream": True}) as r,
        ):
            text = ""
            for chunk in r.iter_text():
                text += chunk
                if "\n\n" in text:
                    poster[:] = parse_sse(text.rsplit("\n\n", 1)[0])
                    first_frame.set()
            poster[:] = parse_sse(text)

    thread = threading.Thread(target=post_and_read)
    thread.start()
    try:
        assert first_frame.wait(10)
        run_id = poster[0][1]["run_id"]
        names = sorted({"RunStarted", "RunContent", *BOOKKEEPING_EVENTS, *TERMINAL, *EXTRA_NAMES})
        url = f"/api/runs/{run_id}/events?after_event_index=-1"
        got = page.evaluate(OPEN_EVENT_SOURCE, [url, names, TERMINAL, True])
    finally:
        thread.join(15)
    _check_run_stream(got, poster, words)
    # It arrived as the model wrote it (about 0.1 s a word), not as one burst at the end.
    content_times = [g["t"] for g in got if g["name"] == "RunContent"]
    assert content_times[-1] - content_times[len(content_times) // 2] > 500


FETCH_STREAM = """
async ([url, token, form]) => {
  const headers = {Accept: 'text/event-stream', Authorization: `Bearer ${token}`};
  let body;
  if (form) {
    body = new FormData();
    body.append('message', 'count');
    body.append('stream', 'true');
  } else {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify({message: 'count', stream: true});
  }
  const r = await fetch(url, {method: 'POST', headers, body});
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  const times = [];
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    text += value;
    times.push(performance.now());
  }
  return {status: r.status, type: r.headers.get('content-type'), text, times};
}
"""


@pytest.mark.parametrize(("url", "form"), [("/api/agents/slow/runs", False), ("/os/agents/slow/runs", True)])
def test_a_post_stream_read_with_fetch_in_the_browser(site, page, scripted_model, url, form):
    words = " ".join(f"word{i}" for i in range(1, 11))
    scripted_model.push_text(words, chunk_delay=0.1)
    answer = page.evaluate(FETCH_STREAM, [url, TOKEN, form])
    assert answer["status"] == 200 and answer["type"].startswith("text/event-stream")
    frames = parse_sse(answer["text"])
    assert [data["event_index"] for _, data in frames] == list(range(len(frames)))
    assert without_bookkeeping([name for name, _ in frames]) == ["RunStarted", *["RunContent"] * 10, "RunCompleted"]
    assert "".join(data["content"] for name, data in frames if name == "RunContent") == words
    assert frames[-1][1]["content"] == words
    assert answer["times"][-1] - answer["times"][0] > 500  # read as it streamed
    if form:  # agno's shapes: its own client's parser takes every frame
        from agno.run.agent import run_output_event_from_dict

        events = [run_output_event_from_dict(data) for _, data in frames]
        assert {e.agent_name for e in events} == {"Slow"} and events[-1].content == words
