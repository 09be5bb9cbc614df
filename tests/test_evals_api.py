"""`/api/evals/` through the ASGI application: suites and cases for staff, bad input answered 400
naming the field, an eval run started with 202 and run in the background by the embedded Celery
worker (the default memory:// broker), polled, followed over SSE, cancelled and deleted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents_app.eval_models import EvalCase, EvalRun, EvalSuite
from tests.conftest import bearer, parse_sse

pytestmark = pytest.mark.django_db(transaction=True)


async def _poll(asgi: Any, url: str, token: str, seconds: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        r = await asgi.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] not in ("queued", "running") or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_staff_create_a_suite_and_cases_run_it_in_the_background_and_poll(
    asgi, agent, staff_token, token, scripted_model
):
    r = await asgi.post(
        "/api/evals/", json={"slug": "maths", "name": "Maths", "agent": agent.slug}, headers=bearer(token)
    )
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"

    r = await asgi.post(
        "/api/evals/", json={"slug": "maths", "name": "Maths", "agent": agent.slug}, headers=bearer(staff_token)
    )
    assert r.status_code == 201, r.text
    assert r.json()["agent"] == agent.slug
    r = await asgi.post(
        "/api/evals/maths/cases/",
        json={"kind": "reliability", "input": "Compute 2+2", "expected_tool_calls": [{"name": "calculator"}]},
        headers=bearer(staff_token),
    )
    assert r.status_code == 201, r.text
    assert r.json()["expected_tool_calls"] == [{"name": "calculator"}]

    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("4")
    r = await asgi.post("/api/evals/maths/runs", json={}, headers=bearer(staff_token))
    assert r.status_code == 202, r.text
    started = r.json()
    assert (started["status"], started["cases_total"], started["cases_done"], started["created_by"]) == (
        "queued",
        1,
        0,
        "staff",
    )

    body = await _poll(asgi, f"/api/evals/maths/runs/{started['id']}", staff_token)
    assert (body["status"], body["score"], body["progress"]) == ("passed", 100.0, 1.0)
    (result,) = body["results"]
    assert (result["status"], result["input"], result["expected"], result["actual"]) == (
        "passed",
        "Compute 2+2",
        "calculator",
        "4",
    )
    assert result["tool_calls"] == [{"name": "calculator", "arguments": {"expression": "2+2"}}]
    assert result["attempts"] == 1 and result["duration"] > 0

    r = await asgi.get(f"/api/evals/maths/runs/{started['id']}/events", headers=bearer(staff_token))
    frames = parse_sse(r.text)
    assert [name for name, _ in frames] == ["EvalCaseCompleted", "EvalRunProgress", "EvalRunCompleted"]
    assert frames[-1][1]["status"] == "passed"

    r = await asgi.get("/api/evals/maths/runs", headers=bearer(staff_token))
    assert [item["id"] for item in r.json()["results"]] == [started["id"]]
    r = await asgi.get("/api/evals/", headers=bearer(staff_token))
    assert r.json()["results"][0]["last_score"] == 100.0

    r = await asgi.post(f"/api/evals/maths/runs/{started['id']}/cancel", headers=bearer(staff_token))
    assert r.status_code == 409 and r.json()["code"] == "eval_run_finished"
    r = await asgi.delete(f"/api/evals/maths/runs/{started['id']}", headers=bearer(staff_token))
    assert r.status_code == 204
    r = await asgi.get(f"/api/evals/maths/runs/{started['id']}", headers=bearer(staff_token))
    assert r.status_code == 404 and r.json()["code"] == "unknown_eval_run"
    assert r.json()["detail"] == f"No eval run {started['id']!r}."  # the id as sent, not UUID('...')


async def test_bad_input_is_a_400_naming_the_field(asgi, agent, staff_token):
    async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = await asgi.post(url, json=body, headers=bearer(staff_token))
        return r.status_code, r.json()

    status, body = await post("/api/evals/", {"slug": "s", "name": "S"})
    assert (status, body["code"], body["agent"]) == (400, "invalid_eval", [body["detail"]])
    status, body = await post("/api/evals/", {"slug": "s", "name": "S", "agent": "nobody"})
    assert (status, body["code"], list(body)) == (400, "invalid", ["agent", "detail", "code"])
    # Text no database can hold is a field error before any lookup (PostgreSQL would raise on it).
    r = await asgi.post(
        "/api/evals/",
        content=json.dumps({"slug": "s", "name": "S", "team": "de\x00mo"}),
        headers={**bearer(staff_token), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"], list(r.json())) == (400, "invalid", ["team", "detail", "code"])
    status, body = await post("/api/evals/", {"slug": "s", "name": "S", "agent": agent.slug, "pinned_version": 3})
    assert (status, body["code"], body["pinned_version"]) == (
        400,
        "invalid_eval",
        ["The target has no saved version 3."],
    )
    agent.is_active = False
    await agent.asave()
    status, body = await post("/api/evals/", {"slug": "s", "name": "S", "agent": agent.slug})
    assert (status, body["code"]) == (400, "invalid_eval")
    assert body["agent"] == [f"The agent {agent.slug!r} is inactive: it refuses runs."]
    agent.is_active = True
    await agent.asave()
    status, created = await post("/api/evals/", {"slug": "s", "name": "S", "agent": agent.slug})
    assert status == 201
    suite_pk = created["id"]

    status, body = await post("/api/evals/s/cases/", {"kind": "accuracy", "expected_output": "4"})
    assert (status, body["code"], body["input"]) == (400, "invalid", ["This field is required."])
    status, body = await post("/api/evals/s/cases/", {"kind": "accuracy", "input": " ", "expected_output": "4"})
    assert status == 400 and "input" in body
    status, body = await post(
        "/api/evals/s/cases/", {"kind": "reliability", "input": "hi", "expected_tool_calls": ["launch_rockets"]}
    )
    assert (status, body["code"], body["expected_tool_calls"]) == (
        400,
        "invalid_eval",
        ["Unknown tool 'launch_rockets'."],
    )
    status, body = await post("/api/evals/s/runs", {})
    assert (status, body["code"], body["cases"]) == (400, "invalid_eval", ["The suite has no case to run."])
    await sync_to_async(EvalCase.objects.create)(suite_id=suite_pk, kind="performance", input="hi")
    status, body = await post("/api/evals/s/runs", {"cases": []})  # an empty selection is not "all"
    assert (status, list(body)) == (400, ["cases", "detail", "code"])
    await sync_to_async(EvalCase.objects.all().delete)()
    status, body = await post("/api/evals/nope/runs", {})
    assert (status, body["code"]) == (404, "unknown_eval_suite")
    assert await sync_to_async(EvalCase.objects.count)() == 0
    assert await sync_to_async(EvalRun.objects.count)() == 0


async def test_cases_crud_and_suite_delete(asgi, agent, staff_token):
    suite = await sync_to_async(EvalSuite.objects.create)(slug="crud", name="Crud", agent=agent)
    r = await asgi.post(
        "/api/evals/crud/cases/",
        json={"kind": "agent_as_judge", "input": "Say hi", "criteria": "Polite.", "scoring": "binary"},
        headers=bearer(staff_token),
    )
    case_id = r.json()["id"]
    r = await asgi.patch(f"/api/evals/crud/cases/{case_id}/", json={"criteria": ""}, headers=bearer(staff_token))
    assert r.status_code == 400 and r.json()["criteria"] == ["An agent-as-judge case needs criteria."]
    r = await asgi.patch(f"/api/evals/crud/cases/{case_id}/", json={"iterations": 3}, headers=bearer(staff_token))
    assert r.status_code == 200 and r.json()["iterations"] == 3
    r = await asgi.get("/api/evals/crud/cases/", headers=bearer(staff_token))
    assert [c["id"] for c in r.json()["results"]] == [case_id]
    r = await asgi.delete(f"/api/evals/crud/cases/{case_id}/", headers=bearer(staff_token))
    assert r.status_code == 204
    r = await asgi.delete("/api/evals/crud/", headers=bearer(staff_token))
    assert r.status_code == 204
    assert not await sync_to_async(EvalSuite.objects.filter(pk=suite.pk).exists)()


async def test_a_threshold_no_score_can_meet_is_a_400_naming_it(asgi, agent, staff_token):
    """Judged scores are 1-10 and latencies positive: an accuracy case with threshold 1000 (or a
    performance case with a p95 limit of 0 s) could never pass, so it is refused like the other bad
    cases, on `threshold`."""
    await sync_to_async(EvalSuite.objects.create)(slug="t", name="T", agent=agent)

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = await asgi.post("/api/evals/t/cases/", json=body, headers=bearer(staff_token))
        return r.status_code, r.json()

    for body in (
        {"kind": "accuracy", "input": "hi", "expected_output": "x", "threshold": 1000},
        {"kind": "accuracy", "input": "hi", "expected_output": "x", "threshold": 0},
        {"kind": "agent_as_judge", "input": "hi", "criteria": "c", "scoring": "numeric", "threshold": 11},
        {"kind": "performance", "input": "hi", "threshold": 0},
        {"kind": "performance", "input": "hi", "threshold": -1},
    ):
        status, answer = await post(body)
        assert (status, answer["code"], list(answer)) == (400, "invalid_eval", ["threshold", "detail", "code"]), body
    status, _ = await post({"kind": "accuracy", "input": "hi", "expected_output": "x", "threshold": 10})
    assert status == 201
    status, _ = await post({"kind": "performance", "input": "hi", "threshold": 0.5})
    assert status == 201
    assert await sync_to_async(EvalCase.objects.count)() == 2
