"""`GET /api/runs/{id}/events` speaks the SSE standard's resume protocol, as a browser's EventSource
uses it: every run event's frame has `id: <event_index>`; a reconnect sends the last one back as
`Last-Event-ID` (with the URL it was opened with) and gets the rest; a reconnect to a run that has
ended with nothing left gets a 204, the answer that stops an EventSource from reconnecting. (The
same through a real browser: tests/test_eventsource_browser.py.)"""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.models import Run
from tests.conftest import bearer, parse_sse, without_error_code

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = "one two three four five"
# RunStarted, ModelRequestStarted, five RunContent, ModelRequestCompleted, RunContentCompleted, RunCompleted.
LAST = 9


async def _finished_run(asgi, agent, token, scripted_model) -> tuple[str, list[tuple[str, dict]]]:
    scripted_model.push_text(WORDS)
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "count", "stream": True}, headers=bearer(token)
    )
    frames = parse_sse(r.text)
    assert [data["event_index"] for _, data in frames] == list(range(LAST + 1)) and frames[-1][0] == "RunCompleted"
    return frames[0][1]["run_id"], frames


def _ids(body: str) -> list[str]:
    return [line[len("id: ") :] for line in body.splitlines() if line.startswith("id: ")]


async def test_every_run_event_frame_has_its_event_index_as_id(asgi, agent, token, scripted_model):
    run_id, frames = await _finished_run(asgi, agent, token, scripted_model)
    r = await asgi.get(f"/api/runs/{run_id}/events", headers=bearer(token))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("id: 0\nevent: RunStarted\ndata: {")
    assert parse_sse(r.text) == frames  # parse_sse checks each id against its frame's event_index
    assert _ids(r.text) == [str(i) for i in range(LAST + 1)]
    # The notice for a resume from past the end is not one of the run's events: no id.
    r = await asgi.get(f"/api/runs/{run_id}/events?after_event_index={LAST}", headers=bearer(token))
    assert [name for name, _ in parse_sse(r.text)] == ["RunEnded"] and _ids(r.text) == []


async def test_last_event_id_resumes_after_it_even_from_a_url_that_asks_for_everything(
    asgi, agent, token, scripted_model
):
    run_id, frames = await _finished_run(asgi, agent, token, scripted_model)
    url = f"/api/runs/{run_id}/events"
    # An EventSource opened on `?after_event_index=-1` reconnects to that same URL with the header.
    r = await asgi.get(url + "?after_event_index=-1", headers={**bearer(token), "Last-Event-ID": "2"})
    assert r.status_code == 200 and parse_sse(r.text) == frames[3:]
    r = await asgi.get(url, headers={**bearer(token), "Last-Event-ID": " 4 "})
    assert parse_sse(r.text) == frames[5:]
    # The later of the two wins.
    r = await asgi.get(url + "?after_event_index=3", headers={**bearer(token), "Last-Event-ID": "1"})
    assert parse_sse(r.text) == frames[4:]
    r = await asgi.get(url, headers={**bearer(token), "Last-Event-ID": ""})  # empty: not sent
    assert parse_sse(r.text) == frames


async def test_a_reconnect_to_an_ended_run_with_nothing_left_is_a_204(asgi, agent, token, scripted_model):
    run_id, frames = await _finished_run(asgi, agent, token, scripted_model)
    url = f"/api/runs/{run_id}/events?after_event_index=-1"
    for last in (str(LAST), str(LAST + 3)):
        r = await asgi.get(url, headers={**bearer(token), "Last-Event-ID": last})
        assert (r.status_code, r.content, r.headers.get("content-type")) == (204, b"", None)
    # A reconnect that missed the terminal event gets it, and no notice.
    r = await asgi.get(url, headers={**bearer(token), "Last-Event-ID": str(LAST - 1)})
    assert r.status_code == 200 and parse_sse(r.text) == frames[LAST:]
    # Without the header (not an EventSource), still the RunEnded notice.
    r = await asgi.get(f"/api/runs/{run_id}/events?after_event_index={LAST}", headers=bearer(token))
    assert r.status_code == 200 and parse_sse(r.text)[0][1]["status"] == "completed"


async def test_a_reconnect_to_a_run_still_going_streams_the_rest_live(asgi, agent, token, scripted_model):
    words = " ".join(f"w{i}" for i in range(12))
    scripted_model.push_text(words, chunk_delay=0.05)
    post = asyncio.ensure_future(
        asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "count", "stream": True}, headers=bearer(token))
    )
    run = None
    for _ in range(200):
        run = await Run.objects.filter(status=Run.Status.RUNNING).afirst()
        if run is not None:
            break
        await asyncio.sleep(0.01)
    assert run is not None
    r = await asgi.get(f"/api/runs/{run.pk}/events", headers={**bearer(token), "Last-Event-ID": "0"})
    frames = parse_sse((await post).text)
    assert r.status_code == 200 and parse_sse(r.text) == frames[1:]
    assert frames[-1][0] == "RunCompleted" and frames[-1][1]["content"] == words


@pytest.mark.parametrize("value", ["abc", "-2", "1.5", "1e3", "9" * 5000])
async def test_a_bad_last_event_id_is_a_400(asgi, agent, token, scripted_model, value):
    run_id, _ = await _finished_run(asgi, agent, token, scripted_model)
    r = await asgi.get(f"/api/runs/{run_id}/events", headers={**bearer(token), "Last-Event-ID": value})
    assert r.status_code == 400
    assert without_error_code(r.json()) == {"Last-Event-ID": ["Must be an integer >= -1."]}


async def test_someone_elses_run_is_a_404_with_or_without_the_header(asgi, agent, token, other_token, scripted_model):
    run_id, _ = await _finished_run(asgi, agent, token, scripted_model)
    for headers in ({}, {"Last-Event-ID": "6"}, {"Last-Event-ID": "2"}):
        r = await asgi.get(f"/api/runs/{run_id}/events", headers={**bearer(other_token), **headers})
        assert r.status_code == 404 and r.json()["code"] == "not_found"
