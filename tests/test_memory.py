"""Memory (issue 6) through the real stack: agentic memory tools, automatic extraction (inline and on
the embedded Celery worker), memories in the context within their bounds, session state through the
run context (initial state, persistence, isolation, concurrency), session summaries that replace
dropped history, the context's bounds, ended sessions, and the /api/memories/ API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from agents_app.hooks.executions import hook_execution_run
from agents_app.memory import MEMORY_HOOK, SUMMARY_HOOK
from agents_app.models import HookExecution
from agents_app.runs import run_agent
from agents_app.tools.context import RunContext
from agents_app.tools.registry import tool_registry
from sessions_app.models import Memory, Run, Session
from sessions_app.selectors import session_history
from tests.conftest import bearer, parse_sse

pytestmark = pytest.mark.django_db(transaction=True)


def agentos(**changes: Any) -> Any:
    from django.conf import settings

    return override_settings(AGENTOS={**settings.AGENTOS, **changes})


async def run(asgi: Any, agent: Any, token: str, message: str, session_id: str | None = None, **extra: Any) -> Any:
    payload = {"message": message} | ({"session_id": session_id} if session_id else {}) | extra
    return await asgi.post(f"/api/agents/{agent.slug}/runs", json=payload, headers=bearer(token))


def system_text(request: dict[str, Any]) -> str:
    first = request["messages"][0]
    return first["content"] if first["role"] == "system" else ""


@pytest.fixture
def register_tool() -> Iterator[Callable[..., Any]]:
    names: list[str] = []

    def _register(fn: Callable[..., Any]) -> Any:
        item = tool_registry.register(fn)
        names.append(item.name)
        return item

    yield _register
    for name in names:
        tool_registry.unregister(name)


# ---- agentic memory ------------------------------------------------------------------------------


async def test_agentic_memory_tools_create_update_and_delete_the_users_memories(
    asgi, agent, token, user, other_user, scripted_model
):
    agent.memory_mode = "agentic"
    await agent.asave()
    scripted_model.push_tool_calls(
        [{"name": "add_memory", "arguments": {"memory": "The user is vegetarian.", "topics": ["Food"]}}]
    )
    scripted_model.push_text("Noted.")
    first = await run(asgi, agent, token, "I am vegetarian, remember that.")
    assert first.status_code == 200, first.text
    offered = {t["function"]["name"] for t in scripted_model.requests[0]["tools"]}
    assert {"add_memory", "update_memory", "delete_memory"} <= offered
    add_schema = next(t for t in scripted_model.requests[0]["tools"] if t["function"]["name"] == "add_memory")
    assert "run_context" not in json.dumps(add_schema)  # the context parameter is hidden from the model
    memory = await Memory.objects.aget()
    assert (memory.user_id, memory.agent_id, memory.memory, memory.topics, memory.source) == (
        user.pk,
        None,
        "The user is vegetarian.",
        ["food"],
        "agentic",
    )
    assert str(memory.source_run_id) == first.json()["run_id"]
    foreign = await Memory.objects.acreate(user=other_user, memory="Mallory's secret.")

    # A new session: the memory is in the context, with its id, and the model updates it.
    scripted_model.push_tool_calls(
        [
            {
                "name": "update_memory",
                "arguments": {"memory_id": str(memory.pk), "memory": "The user is vegan.", "topics": ["food"]},
            },
            {"name": "delete_memory", "arguments": {"memory_id": str(foreign.pk)}},  # another user's: never touched
        ]
    )
    scripted_model.push_text("Updated.")
    second = await run(asgi, agent, token, "Actually I am vegan now, what food should I eat?")
    assert second.status_code == 200, second.text
    system = system_text(scripted_model.requests[2])
    assert f"- [{memory.pk}] The user is vegetarian. (topics: food)" in system
    assert "add_memory" in system  # the agentic instructions
    tool_results = [m for m in scripted_model.requests[3]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_results] == ["Updated.", f"No memory {foreign.pk} to delete."]
    await memory.arefresh_from_db()
    assert memory.memory == "The user is vegan."
    assert await Memory.objects.filter(pk=foreign.pk).aexists()

    scripted_model.push_tool_calls([{"name": "delete_memory", "arguments": {"memory_id": str(memory.pk)}}])
    scripted_model.push_text("Forgotten.")
    assert (await run(asgi, agent, token, "Forget what I eat.")).status_code == 200
    assert not await Memory.objects.filter(pk=memory.pk).aexists()


async def test_agent_scoped_memories_are_private_to_their_agent(asgi, agent, token, user, scripted_model):
    agent.memory_mode = "agentic"
    agent.memory_scope = "agent"
    await agent.asave()
    other = await Memory.objects.acreate(user=user, memory="Shared fact about tea.")
    mine = await Memory.objects.acreate(user=user, agent=agent, memory="Private fact about tea.")
    scripted_model.push_text("ok")
    assert (await run(asgi, agent, token, "tea?")).status_code == 200
    system = system_text(scripted_model.requests[-1])
    assert f"[{mine.pk}]" in system and f"[{other.pk}]" not in system


# ---- automatic memory ----------------------------------------------------------------------------


async def test_automatic_memory_inline_streams_memory_events_and_extracts(asgi, agent, token, user, scripted_model):
    agent.memory_mode = "automatic"
    agent.memory_hook_mode = "inline"
    await agent.asave()
    existing = await Memory.objects.acreate(user=user, memory="The user lives in Paris.", topics=["home"])
    scripted_model.push_text("Lyon is lovely.")
    scripted_model.push_json(
        {
            "operations": [
                {
                    "op": "update",
                    "memory_id": str(existing.pk),
                    "memory": "The user lives in Lyon.",
                    "topics": ["home"],
                },
                {"op": "add", "memory_id": None, "memory": "The user has a cat named Tom.", "topics": ["pets"]},
            ]
        }
    )
    r = await run(asgi, agent, token, "I moved to Lyon with my cat Tom.", stream=True)
    assert r.status_code == 200
    names = [name for name, _ in parse_sse(r.text)]
    assert names[-3:] == ["MemoryUpdateStarted", "MemoryUpdateCompleted", "RunCompleted"]
    assert "RunContent" in names  # memory is an observer: the answer still streams token by token
    manager_request = scripted_model.requests[-1]
    assert manager_request["response_format"]["json_schema"]["name"] == "memory_updates"
    prompt = manager_request["messages"][1]["content"]
    assert f"[{existing.pk}] The user lives in Paris." in prompt and "The user's message:\nI moved to Lyon" in prompt
    memories = {m.memory: m async for m in Memory.objects.order_by("created_at")}
    assert set(memories) == {"The user lives in Lyon.", "The user has a cat named Tom."}
    added = memories["The user has a cat named Tom."]
    assert (added.source, added.topics, str(added.source_run_id)) == (
        "automatic",
        ["pets"],
        parse_sse(r.text)[0][1]["run_id"],
    )


async def test_automatic_memory_runs_on_the_embedded_worker_after_the_answer(asgi, agent, token, user, scripted_model):
    agent.memory_mode = "automatic"  # background by default
    await agent.asave()
    scripted_model.push_text("Nice to meet you, Ada.")
    scripted_model.push_json(
        {"operations": [{"op": "add", "memory_id": None, "memory": "The user's name is Ada.", "topics": ["name"]}]}
    )
    r = await run(asgi, agent, token, "My name is Ada.")
    assert r.status_code == 200 and "MemoryUpdateStarted" not in r.text
    execution = await HookExecution.objects.aget(run_id=r.json()["run_id"])
    assert execution.hook_name == MEMORY_HOOK
    for _ in range(100):
        await execution.arefresh_from_db()
        if execution.status == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert execution.status == "succeeded", execution.error
    memory = await Memory.objects.aget()
    assert (memory.memory, memory.source, memory.user_id) == ("The user's name is Ada.", "automatic", user.pk)
    # A redelivered task does nothing: the memory is written exactly once.
    assert (await asyncio.to_thread(hook_execution_run, execution_id=execution.pk)).status == "succeeded"
    assert await Memory.objects.acount() == 1


@pytest.mark.django_db
def test_a_failing_memory_manager_is_retried_and_never_fails_the_run(
    agent, user, scripted_model, django_capture_on_commit_callbacks
):
    agent.memory_mode = "automatic"
    agent.save()
    with django_capture_on_commit_callbacks(execute=False):
        scripted_model.push_text("Hello.")
        result = run_agent(agent_id=agent.slug, user=user, message="My dog is called Rex.")
    assert result.status == "completed"
    execution = HookExecution.objects.get()
    scripted_model.push_text("this is not JSON")
    assert hook_execution_run(execution_id=execution.pk).status == "queued"  # retried later
    execution.refresh_from_db()
    assert "not valid JSON" in execution.error and Memory.objects.count() == 0
    HookExecution.objects.filter(pk=execution.pk).update(next_attempt_at=None)
    scripted_model.push_json({"operations": [{"op": "add", "memory_id": None, "memory": "Dog: Rex.", "topics": []}]})
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    assert list(Memory.objects.values_list("memory", flat=True)) == ["Dog: Rex."]


def test_offline_model_remembers_what_the_user_says_about_themselves(offline_agent, user):
    offline_agent.memory_mode = "automatic"
    offline_agent.memory_hook_mode = "inline"
    offline_agent.save()
    run_agent(agent_id=offline_agent.slug, user=user, message="Hello! My name is Ada. What is 2+2?")
    assert list(Memory.objects.values_list("memory", flat=True)) == ['The user said: "My name is Ada"']
    later = run_agent(agent_id=offline_agent.slug, user=user, message="My name is Ada")  # known: not repeated
    assert Memory.objects.count() == 1
    assert 'I remember 1 thing(s) about you, e.g. The user said: "My name is Ada"' in later.content


# ---- memories in the context ---------------------------------------------------------------------


async def test_relevant_memories_go_into_the_context_bounded_by_count_and_size(
    asgi, agent, token, user, other_user, scripted_model
):
    agent.memory_mode = "agentic"  # memories in the context, and no background work to outlive the test
    agent.memory_context_items = 3
    agent.memory_context_chars = 10_000
    await agent.asave()
    for i in range(20):
        await Memory.objects.acreate(user=user, memory=f"Unrelated fact number {i}.")
    relevant = [
        await Memory.objects.acreate(user=user, memory="The user plays the violin."),
        await Memory.objects.acreate(user=user, memory="The user practises scales.", topics=["violin"]),
    ]
    await Memory.objects.acreate(user=other_user, memory="Mallory plays the violin too.")
    scripted_model.push_text("ok")
    assert (await run(asgi, agent, token, "Which violin pieces suit me?")).status_code == 200
    lines = [line for line in system_text(scripted_model.requests[0]).splitlines() if line.startswith("- [")]
    assert len(lines) == 3
    assert {f"[{m.pk}]" for m in relevant} <= {line.split("]")[0] + "]" for line in [ln[2:] for ln in lines]}
    assert "Mallory" not in system_text(scripted_model.requests[0])

    agent.memory_context_chars = 120  # one memory line fits, not two
    await agent.asave()
    scripted_model.push_text("ok")
    assert (await run(asgi, agent, token, "violin again")).status_code == 200
    lines = [line for line in system_text(scripted_model.requests[-1]).splitlines() if line.startswith("- [")]
    assert len(lines) == 1 and sum(len(line) + 1 for line in lines) <= 120


# ---- session state --------------------------------------------------------------------------------


def bump(run_context: RunContext, by: int = 1) -> int:
    """Add to the session's counter.

    Args:
        by: How much to add.
    """
    state = run_context.session_state
    state["counter"] = state.get("counter", 0) + by
    state.setdefault("seen_runs", []).append(str(run_context.run_id))
    return state["counter"]


async def test_session_state_starts_from_the_agents_initial_state_persists_and_is_per_session(
    asgi, agent, token, scripted_model, register_tool
):
    register_tool(bump)
    agent.tools = ["bump"]
    agent.initial_session_state = {"counter": 10, "plan": "free"}
    await agent.asave()
    scripted_model.push_tool_calls([{"name": "bump", "arguments": {"by": 2}}])
    scripted_model.push_text("bumped")
    first = (await run(asgi, agent, token, "bump it")).json()
    assert [m["content"] for m in scripted_model.requests[1]["messages"] if m["role"] == "tool"] == ["12"]
    session = await Session.objects.aget(pk=first["session_id"])
    assert session.state == {"counter": 12, "plan": "free", "seen_runs": [first["run_id"]]}

    scripted_model.push_tool_calls([{"name": "bump", "arguments": {}}])
    scripted_model.push_text("bumped again")
    second = (await run(asgi, agent, token, "again", first["session_id"])).json()
    await session.arefresh_from_db()
    assert session.state["counter"] == 13 and session.state["seen_runs"] == [first["run_id"], second["run_id"]]

    # Another session starts from the initial state; the agent's initial state is never changed.
    scripted_model.push_text("hi")
    third = (await run(asgi, agent, token, "new session")).json()
    assert (await Session.objects.aget(pk=third["session_id"])).state == {"counter": 10, "plan": "free"}
    await agent.arefresh_from_db()
    assert agent.initial_session_state == {"counter": 10, "plan": "free"}
    detail = (await asgi.get(f"/api/sessions/{first['session_id']}/", headers=bearer(token))).json()
    assert detail["state"]["counter"] == 13 and detail["ended_at"] is None and detail["summary"] == ""


async def test_two_concurrent_runs_in_one_session_lose_no_state_update(
    asgi, agent, token, scripted_model, register_tool
):
    register_tool(bump)
    agent.tools = ["bump"]
    agent.busy_session_policy = "queue"
    await agent.asave()
    scripted_model.push_text("start")
    session_id = (await run(asgi, agent, token, "start")).json()["session_id"]
    for _ in range(2):
        scripted_model.push_tool_calls([{"name": "bump", "arguments": {}}], delay=0.3)
        scripted_model.push_text("done")
    first, second = await asyncio.gather(
        run(asgi, agent, token, "bump", session_id), run(asgi, agent, token, "bump", session_id)
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    session = await Session.objects.aget(pk=session_id)
    assert session.state["counter"] == 2
    assert sorted(session.state["seen_runs"]) == sorted([first.json()["run_id"], second.json()["run_id"]])


def test_a_runs_state_changes_merge_with_a_concurrent_writer_of_other_keys(agent, user, scripted_model, register_tool):
    """A background hook (or anything) writing other keys while the run works is not overwritten:
    the run saves only the keys it changed, merged under the session row's lock."""
    from sessions_app.services import session_state_merge

    def bump_and_meanwhile(run_context: RunContext) -> str:
        """Bump, while another writer changes another key."""
        run_context.session_state["counter"] = run_context.session_state.get("counter", 0) + 1
        session_state_merge(session_id=run_context.session_id, state_set={"topics": ["x"]}, state_unset=[])
        return "ok"

    register_tool(bump_and_meanwhile)
    agent.tools = ["bump_and_meanwhile"]
    agent.initial_session_state = {"counter": 0, "gone": True}
    agent.save()
    scripted_model.push_tool_calls([{"name": "bump_and_meanwhile", "arguments": {}}])
    scripted_model.push_text("done")
    result = run_agent(agent_id=agent.slug, user=user, message="go")
    assert Session.objects.get(pk=result.session_id).state == {"counter": 1, "gone": True, "topics": ["x"]}


# ---- session summaries and the context's bounds --------------------------------------------------


async def test_a_summary_of_dropped_runs_replaces_them_in_the_context(asgi, agent, token, scripted_model):
    agent.history_runs = 2
    agent.session_summaries = True
    agent.summary_hook_mode = "inline"
    await agent.asave()
    session_id = None
    for i in range(3):
        scripted_model.push_text(f"answer {i}")
        if i == 2:  # the window (2 runs) is full: run 0 leaves it when run 2 ends, so it is summarized
            scripted_model.push_json({"summary": "The user asked question 0 and got answer 0."})
        r = await run(asgi, agent, token, f"question {i}", session_id, stream=True)
        frames = parse_sse(r.text)
        session_id = frames[0][1]["session_id"]
        names = [name for name, _ in frames]
        assert ("SessionSummaryStarted" in names) == (i == 2), names
    summary_request = scripted_model.requests[-1]
    assert summary_request["response_format"]["json_schema"]["name"] == "session_summary"
    assert "User: question 0\nAssistant: answer 0" in summary_request["messages"][1]["content"]
    assert "question 1" not in summary_request["messages"][1]["content"]

    scripted_model.push_text("answer 3")
    scripted_model.push_json({"summary": "Questions 0 and 1 were asked."})  # run 1 now leaves the window
    await run(asgi, agent, token, "question 3", session_id)
    sent = scripted_model.requests[-2]["messages"]
    assert "The user asked question 0 and got answer 0." in system_text(scripted_model.requests[-2])
    assert [m["content"] for m in sent if m["role"] == "user"] == ["question 1", "question 2", "question 3"]
    detail = (await asgi.get(f"/api/sessions/{session_id}/", headers=bearer(token))).json()
    assert detail["summary"] == "Questions 0 and 1 were asked." and detail["summary_updated_at"]


@pytest.mark.django_db
def test_background_summaries_fold_in_later_runs_and_never_go_backwards(
    agent, user, scripted_model, django_capture_on_commit_callbacks
):
    agent.history_runs = 1
    agent.session_summaries = True
    agent.save()
    session_id = None
    with django_capture_on_commit_callbacks(execute=False):
        for i in range(3):
            scripted_model.push_text(f"answer {i}")
            session_id = run_agent(
                agent_id=agent.slug, user=user, message=f"question {i}", session_id=session_id
            ).session_id
    executions = list(HookExecution.objects.filter(hook_name=SUMMARY_HOOK).order_by("created_at"))
    # Runs 1 and 2 each pushed a run out of the 1-run window (run 0 found it empty).
    assert len(executions) == 2
    # The last one runs first: it folds runs 0 and 1 (all that left the window) into the summary.
    scripted_model.push_json({"summary": "Questions 0 and 1 were answered."})
    assert hook_execution_run(execution_id=executions[1].pk).status == "succeeded"
    prompt = scripted_model.requests[-1]["messages"][1]["content"]
    assert "question 0" in prompt and "question 1" in prompt and "question 2" not in prompt
    # The earlier ones find nothing new to summarize (no model call), and cannot overwrite it.
    before = len(scripted_model.requests)
    for execution in executions[:1]:
        assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    assert len(scripted_model.requests) == before
    session = Session.objects.get(pk=session_id)
    assert session.summary == "Questions 0 and 1 were answered."
    last_dropped = Run.objects.filter(session_id=session_id).order_by("created_at")[1]
    assert session.summary_until == last_dropped.created_at


async def test_the_history_window_stays_within_its_message_and_character_bounds(asgi, agent, token, scripted_model):
    agent.history_runs = 10
    agent.history_max_chars = 1_000
    await agent.asave()
    session_id = None
    sizes = [300, 300, 2_000, 100, 200]  # the third run alone is over the bound
    for i, size in enumerate(sizes):
        scripted_model.push_text("a" * size)
        session_id = (await run(asgi, agent, token, f"q{i}", session_id)).json()["session_id"]
    scripted_model.push_text("ok")
    await run(asgi, agent, token, "last", session_id)
    history = scripted_model.requests[-1]["messages"][1:-1]
    assert [m["content"] for m in history if m["role"] == "user"] == ["q3", "q4"]
    assert sum(len(m["content"]) for m in history) <= 1_000

    with agentos(MAX_HISTORY_MESSAGES=3):
        scripted_model.push_text("ok")
        await run(asgi, agent, token, "bounded", session_id)
    history = scripted_model.requests[-1]["messages"][1:-1]
    assert len(history) <= 3 and [m["content"] for m in history if m["role"] == "user"] == ["last"]


def test_history_window_drops_whole_runs_so_tool_calls_keep_their_results(agent, user, scripted_model):
    agent.history_runs = 5
    agent.save()
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    scripted_model.push_text("It is 4.")
    first = run_agent(agent_id=agent.slug, user=user, message="2+2?")
    scripted_model.push_text("b" * 50)
    run_agent(agent_id=agent.slug, user=user, message="next", session_id=first.session_id)
    full = session_history(session_id=first.session_id, runs=5)
    assert [m["role"] for m in full.messages] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    window = session_history(session_id=first.session_id, runs=5, max_messages=5)
    assert [m["role"] for m in window.messages] == ["user", "assistant"] and window.overflow


# ---- ended sessions ------------------------------------------------------------------------------


async def test_an_ended_session_refuses_runs_and_stays_readable(asgi, agent, token, other_token, scripted_model):
    scripted_model.push_text("hi")
    first = (await run(asgi, agent, token, "hello")).json()
    session_id = first["session_id"]
    assert (await asgi.post(f"/api/sessions/{session_id}/end", headers=bearer(other_token))).status_code == 404
    ended = await asgi.post(f"/api/sessions/{session_id}/end", headers=bearer(token))
    assert ended.status_code == 200 and ended.json()["ended_at"]
    again = await asgi.post(f"/api/sessions/{session_id}/end", headers=bearer(token))
    assert again.json()["ended_at"] == ended.json()["ended_at"]  # idempotent
    runs_before = await Run.objects.acount()
    refused = await run(asgi, agent, token, "more?", session_id)
    assert refused.status_code == 409 and "has ended" in refused.json()["detail"]
    assert await Run.objects.acount() == runs_before and len(scripted_model.requests) == 1
    detail = await asgi.get(f"/api/sessions/{session_id}/", headers=bearer(token))
    assert detail.status_code == 200 and len(detail.json()["runs"]) == 1


async def test_an_ended_session_refuses_runs_over_the_websocket(agent, user, scripted_model):
    from channels.testing import WebsocketCommunicator

    from agentos_site.asgi import application

    scripted_model.push_text("hi")
    session_id = (await asyncio.to_thread(run_agent, agent_id=agent.slug, user=user, message="hello")).session_id
    await Session.objects.filter(pk=session_id).aupdate(ended_at="2026-01-01T00:00:00Z")
    from rest_framework.authtoken.models import Token

    key = (await Token.objects.acreate(user=user)).key
    communicator = WebsocketCommunicator(application, f"/ws/agents/{agent.slug}/?token={key}")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "run", "message": "more?", "session_id": session_id})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["event"] == "Error" and frame["error_type"] == "session_ended", frame
    await communicator.disconnect()


# ---- the memories API ------------------------------------------------------------------------------


async def test_memories_api_lists_filters_creates_updates_and_deletes_only_my_own(
    asgi, agent, token, other_token, user, other_user
):
    headers = bearer(token)
    created = await asgi.post(
        "/api/memories/", json={"memory": "  Likes green tea. ", "topics": ["Drinks", "tea", "tea"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["memory"], body["topics"], body["agent_id"], body["source"]) == (
        "Likes green tea.",
        ["drinks", "tea"],
        None,
        "user",
    )
    private = await asgi.post(
        "/api/memories/", json={"memory": "Prefers short answers.", "agent_id": agent.slug}, headers=headers
    )
    assert private.status_code == 201 and private.json()["agent_id"] == agent.slug
    theirs = await Memory.objects.acreate(user=other_user, memory="Likes coffee.", topics=["drinks"])

    listed = (await asgi.get("/api/memories/", headers=headers)).json()
    assert listed["count"] == 2 and {m["memory"] for m in listed["results"]} == {
        "Likes green tea.",
        "Prefers short answers.",
    }
    by_topic = (await asgi.get("/api/memories/?topic=DRINKS", headers=headers)).json()
    assert [m["memory"] for m in by_topic["results"]] == ["Likes green tea."]
    assert (await asgi.get("/api/memories/?topic=drink", headers=headers)).json()["count"] == 0  # exact topics
    assert [
        m["memory"] for m in (await asgi.get("/api/memories/?search=SHORT", headers=headers)).json()["results"]
    ] == ["Prefers short answers."]
    assert (await asgi.get(f"/api/memories/?agent_id={agent.slug}", headers=headers)).json()["count"] == 1

    url = f"/api/memories/{body['memory_id']}/"
    patched = await asgi.patch(url, json={"topics": ["tea"]}, headers=headers)
    assert (
        patched.status_code == 200
        and patched.json()["topics"] == ["tea"]
        and patched.json()["memory"] == "Likes green tea."
    )
    assert (await asgi.put(url, json={"topics": []}, headers=headers)).status_code == 400  # PUT needs the text
    replaced = await asgi.put(url, json={"memory": "Likes oolong.", "topics": []}, headers=headers)
    assert replaced.status_code == 200 and replaced.json()["memory"] == "Likes oolong."

    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"memory": "hacked"}} if method == "patch" else {}
        response = await getattr(asgi, method)(f"/api/memories/{theirs.pk}/", headers=headers, **kwargs)
        assert response.status_code == 404, method
    await theirs.arefresh_from_db()
    assert theirs.memory == "Likes coffee."
    assert (await asgi.delete(url, headers=headers)).status_code == 204
    assert (await asgi.get(url, headers=headers)).status_code == 404
    assert (await asgi.get("/api/memories/")).status_code == 401
    assert (await asgi.get("/api/memories/", headers=bearer(other_token))).json()["count"] == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "memory"),
        ({"memory": "   "}, "memory"),
        ({"memory": "x" * 2001}, "memory"),
        ({"memory": "ok", "topics": "food"}, "topics"),
        ({"memory": "ok", "topics": [f"t{i}" for i in range(11)]}, "topics"),
        ({"memory": "ok", "topics": ["a|b"]}, "memory"),
        ({"memory": "ok", "agent_id": "no-such-agent"}, "agent_id"),
    ],
)
async def test_memories_api_rejects_bad_input_with_a_clear_400(asgi, token, payload, field):
    response = await asgi.post("/api/memories/", json=payload, headers=bearer(token))
    assert response.status_code == 400 and field in response.json(), response.text
    assert await Memory.objects.acount() == 0


async def test_memory_filters_and_writes_with_a_nul_character_are_refused_cleanly(asgi, token, user):
    """PostgreSQL refuses NUL in text (a 500 there): filters find nothing, writes are a 400."""
    await Memory.objects.acreate(user=user, memory="Likes tea.", topics=["drinks"])
    for param in ("search", "topic", "agent_id"):
        r = await asgi.get(f"/api/memories/?{param}=a%00b", headers=bearer(token))
        assert r.status_code == 200 and r.json()["results"] == [], param
    r = await asgi.post("/api/memories/", json={"memory": "a\x00b"}, headers=bearer(token))
    assert r.status_code == 400
    from sessions_app.services import MemoryOperation, memory_apply

    done = await asyncio.to_thread(
        memory_apply,
        user_id=user.pk,
        agent_pk=None,
        operations=[
            MemoryOperation(op="add", memory="bad\x00"),
            MemoryOperation(op="add", memory="ok", topics=["x\x00"]),
        ],
        source="automatic",
        run_id=None,
    )
    assert done == {"added": 0, "updated": 0, "deleted": 0, "skipped": 2}
