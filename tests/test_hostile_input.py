"""Hostile input answers a clear 4xx (or an Error frame on a socket that keeps answering) with
nothing stored, through the one sanitising place (sessions_app.inputs); unknown API paths answer
JSON; streaming endpoints accept `Accept: text/event-stream`. (Issue 14, first part.)"""

from __future__ import annotations

import pytest

from sessions_app.inputs import MAX_JSON_DEPTH, InvalidInput, clean_json, clean_text, parse_json
from sessions_app.models import Memory, Run
from tests.conftest import bearer, parse_sse
from tests.test_websocket import connect

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_the_rules():
    assert clean_text("fine ✓") == "fine ✓"
    for bad in ("a\x00b", "a\ud800b"):
        with pytest.raises(InvalidInput):
            clean_text(bad)
    assert parse_json(_nested(MAX_JSON_DEPTH), field="x")
    with pytest.raises(InvalidInput):
        parse_json(_nested(MAX_JSON_DEPTH + 1), field="x")
    with pytest.raises(InvalidInput):
        parse_json(_nested(3000), field="x")  # deeper than orjson itself takes
    with pytest.raises(InvalidInput):
        clean_json({"ok": ["fine", {"k\x00": 1}]}, field="x")


async def test_websocket_frames_that_cannot_be_acted_on_get_an_error_frame_and_the_socket_goes_on(offline_agent, token):
    comm = await connect(offline_agent.slug, token=token)
    frames = {
        "nul": '{"type": "run", "message": "hi\\u0000there", "id": 1}',
        "surrogate": '{"type": "run", "message": "\\ud800", "id": 2}',
        "nested": '{"type": "run", "message": "hi", "id": 3, "x": ' + _nested(3000) + "}",
    }
    for name, text in frames.items():
        await comm.send_to(text_data=text)
        frame = await comm.receive_json_from(timeout=5)
        assert frame["event"] == "Error", name
        assert frame["code"] in ("invalid_input", "bad_frame"), (name, frame)
    await comm.send_json_to({"type": "run", "message": "what is 2+2?", "id": 4})
    while (frame := await comm.receive_json_from(timeout=5))["event"] != "RunCompleted":
        assert frame["event"] != "Error", frame
    await comm.disconnect()
    assert await Run.objects.acount() == 1  # only the good message was stored


async def test_rest_and_agno_refuse_a_nul_or_a_lone_surrogate_in_a_message(asgi, offline_agent, token):
    for text in ("a\x00b", "a\ud800b"):
        r = await asgi.post(
            f"/api/agents/{offline_agent.slug}/runs",
            content=('{"message": "' + text.encode("unicode_escape").decode() + '"}').encode(),
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["code"] in ("invalid_input", "parse_error"), r.text
    r = await asgi.post(f"{OS}/agents/{offline_agent.slug}/runs", data={"message": "a\x00b"}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    assert await Run.objects.acount() == 0


async def test_agno_list_item_errors_and_deep_form_json_are_422s_not_500s(asgi, offline_agent, token):
    cases = [
        ("post", f"{OS}/memories", {"json": {"memory": "ok", "topics": [{"a": 1}, None, 3]}}),
        ("request", f"{OS}/memories", {"method": "DELETE", "json": {"memory_ids": [1, None]}}),
    ]
    for method, url, kwargs in cases:
        call = getattr(asgi, method)
        r = await (
            call(kwargs.pop("method"), url, headers=bearer(token), **kwargs)
            if method == "request"
            else call(url, headers=bearer(token), **kwargs)
        )
        assert r.status_code == 422, (url, r.text)
        body = r.json()
        assert body["code"] == "validation_error" and all({"loc", "msg", "type"} <= set(e) for e in body["detail"])
    memory = await Memory.objects.acreate(user_id=(await _user_id(token)), memory="kept")
    r = await asgi.patch(f"{OS}/memories/{memory.pk}", json={"topics": [None]}, headers=bearer(token))
    assert r.status_code == 422, r.text
    for field in ("session_state", "metadata"):
        r = await asgi.post(
            f"{OS}/agents/{offline_agent.slug}/runs",
            data={"message": "hi", "stream": "false", field: _nested(3000)},
            headers=bearer(token),
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field], r.text
    assert await Run.objects.acount() == 0


async def _user_id(token: str) -> int:
    from rest_framework.authtoken.models import Token

    return (await Token.objects.select_related("user").aget(key=token)).user_id


async def test_unknown_paths_under_the_apis_are_json_404s(asgi, token):
    r = await asgi.get("/api/no-such-thing/", headers=bearer(token))
    assert (r.status_code, r.headers["content-type"], r.json()) == (
        404,
        "application/json",
        {"detail": "Not found.", "code": "not_found"},
    )
    r = await asgi.get(f"{OS}/no/such/route", headers=bearer(token))
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found", "code": "not_found"})


async def test_streaming_endpoints_accept_an_event_stream_accept_header(asgi, offline_agent, token):
    headers = {**bearer(token), "Accept": "text/event-stream"}
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi", "stream": True}, headers=headers
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[-1][0] == "RunCompleted"
    run_id = events[-1][1]["run_id"]
    r = await asgi.get(f"/api/runs/{run_id}/events", headers=headers)
    assert r.status_code == 200 and parse_sse(r.text)[-1][0] == "RunCompleted"
    r = await asgi.post(f"{OS}/agents/{offline_agent.slug}/runs", data={"message": "hi"}, headers=headers)
    assert r.status_code == 200 and parse_sse(r.text)[-1][0] == "RunCompleted"
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers={**bearer(token), "Accept": "*/*"}
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_a_resume_past_the_end_of_a_finished_run_says_it_has_ended(asgi, offline_agent, token):
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token)
    )
    events = parse_sse(r.text)
    run_id, last = events[-1][1]["run_id"], events[-1][1]["event_index"]
    r = await asgi.get(f"/api/runs/{run_id}/events", params={"after_event_index": last}, headers=bearer(token))
    ((name, notice),) = parse_sse(r.text)
    assert (name, notice["status"], notice["last_event_index"], "event_index" in notice) == (
        "RunEnded",
        "completed",
        last,
        False,
    )
    comm = await connect(offline_agent.slug, token=token)
    await comm.send_json_to({"type": "resume", "run_id": run_id, "after_event_index": last + 5})
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["event"], frame["run_id"], frame["status"]) == ("RunEnded", run_id, "completed")
    await comm.send_json_to({"type": "resume", "run_id": run_id, "after_event_index": last - 1})
    assert (await comm.receive_json_from(timeout=5))["event"] == "RunCompleted"  # a terminal event: no notice
    await comm.disconnect()
