"""The run engine from Python: the sync wrapper, the async stream, bounded queries, the offline
model, and the tool registry."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.engine.protocol import InvalidRunInput
from agents_app.engine.runner import build_context
from agents_app.providers.offline import OfflineProvider
from agents_app.runs import run_agent, stream_agent
from agents_app.selectors import AgentNotFound
from agents_app.tools.registry import ToolArgumentsError, ToolRegistry, tool_registry
from sessions_app.models import Message, Run, Session
from sessions_app.services import SessionNotFound
from tests.factories import AgentFactory


@pytest.mark.django_db
def test_run_agent_sync_wrapper_persists_a_conversation(offline_agent, user):
    first = run_agent(agent_id=offline_agent.slug, user=user, message="hello")
    assert first.status == "completed"
    assert first.content.startswith('[offline demo model] You said: "hello".')
    second = run_agent(agent_id=offline_agent.slug, user=user, message="again", session_id=first.session_id)
    assert second.session_id == first.session_id
    assert 'Earlier in this session you said: "hello"' in second.content
    assert Run.objects.filter(session_id=first.session_id, status="completed").count() == 2
    assert Session.objects.get().name == "hello"


@pytest.mark.django_db
def test_queries_per_run_are_bounded_and_constant(offline_agent, user):
    """O(1) queries per run: run 2 and run 40 of a session cost the same, and at most 8."""
    first = run_agent(agent_id=offline_agent.slug, user=user, message="start")
    counts = []
    for i in range(40):
        with CaptureQueriesContext(connection) as ctx:
            run_agent(agent_id=offline_agent.slug, user=user, message=f"message {i}", session_id=first.session_id)
        counts.append(len([q for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]))
    assert counts[0] == counts[-1], counts
    assert counts[-1] <= 8, ctx.captured_queries


@pytest.mark.django_db
def test_run_prepare_rejects_bad_input_before_writing(offline_agent, user, other_user):
    with pytest.raises(InvalidRunInput):
        run_agent(agent_id=offline_agent.slug, user=user, message="   ")
    with pytest.raises(AgentNotFound):
        run_agent(agent_id="missing", user=user, message="hi")
    mine = run_agent(agent_id=offline_agent.slug, user=user, message="mine")
    with pytest.raises(SessionNotFound):
        run_agent(agent_id=offline_agent.slug, user=other_user, message="x", session_id=mine.session_id)
    other_agent = AgentFactory(slug="other")
    with pytest.raises(SessionNotFound):
        run_agent(agent_id=other_agent.slug, user=user, message="x", session_id=mine.session_id)
    assert Run.objects.count() == 1 and Message.objects.filter(role="user").count() == 1


@pytest.mark.django_db(transaction=True)
async def test_stream_agent_yields_typed_events(offline_agent, user):
    events = [e async for e in stream_agent(agent_id=offline_agent.slug, user=user, message="what is 2+3?")]
    names = [e.name for e in events]
    assert names[0] == "RunStarted" and names[-1] == "RunCompleted"
    assert "ToolCallStarted" in names and "ToolCallCompleted" in names
    assert [e.event_index for e in events] == list(range(len(events)))
    assert events[-1].content == "[offline demo model] I used my tools: calculator returned 5."
    as_dicts = [e.to_dict() for e in events]
    assert all({"event", "event_index", "run_id", "session_id", "agent_id", "created_at"} <= d.keys() for d in as_dicts)


@pytest.mark.django_db(transaction=True)
async def test_a_reader_that_stops_early_does_not_lose_the_run(offline_agent, user):
    gen = stream_agent(agent_id=offline_agent.slug, user=user, message="a b c d e f g")
    first = await gen.__anext__()
    await gen.aclose()  # the client went away after the first event
    for _ in range(100):
        run = await Run.objects.aget(pk=first.run_id)
        if run.status != Run.Status.RUNNING:
            break
        await asyncio.sleep(0.02)
    assert run.status == Run.Status.COMPLETED
    assert run.output.startswith('[offline demo model] You said: "a b c d e f g"')


@pytest.mark.django_db(transaction=True)
async def test_concurrent_runs_in_one_session_are_all_kept(offline_agent, user):
    from agents_app.runs import arun_agent

    first = await arun_agent(agent_id=offline_agent.slug, user=user, message="start")
    results = await asyncio.gather(
        *(
            arun_agent(agent_id=offline_agent.slug, user=user, message=f"m{i}", session_id=first.session_id)
            for i in range(10)
        )
    )
    assert {r.status for r in results} == {"completed"}
    assert await Run.objects.filter(session_id=first.session_id).acount() == 11
    inputs = {r async for r in Run.objects.filter(session_id=first.session_id).values_list("input", flat=True)}
    assert inputs == {"start", *(f"m{i}" for i in range(10))}


def test_build_context_orders_system_history_then_input():
    agent = AgentFactory.build(instructions="Be brief.", output_schema=None)
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert build_context(agent, history, "c") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    schema_agent = AgentFactory.build(instructions="", output_schema={"type": "object", "properties": {}})
    assert build_context(schema_agent, [], "x")[0]["content"].startswith("Answer with a single JSON object")


# ---- offline model --------------------------------------------------------------------------


def _offline():
    return OfflineProvider(config=None)  # type: ignore[arg-type]


async def test_offline_model_fills_a_schema_with_the_right_types():
    from agents_app.providers.base import ResponseFormat

    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 30},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mood": {"enum": ["happy", "sad"]},
            "ok": {"type": "boolean"},
        },
        "required": ["title", "score", "tags", "mood", "ok"],
    }
    response = await _offline().complete(
        messages=[{"role": "user", "content": "rate this please"}],
        tools=[],
        response_format=ResponseFormat("x", schema),
    )
    data = json.loads(response.content)
    from jsonschema import validate

    validate(data, schema)
    assert data["score"] == 3 and data["mood"] == "happy" and len(data["title"]) <= 30


async def test_offline_model_streams_words_that_join_to_the_answer():
    pieces = [p async for p in _offline().stream(messages=[{"role": "user", "content": "hi"}], tools=[])]
    final = pieces[-1]
    assert "".join(pieces[:-1]) == final.content
    assert final.content.startswith("[offline demo model]")


async def test_offline_model_only_calls_enabled_tools():
    calc = tool_registry.get("calculator")
    with_tool = await _offline().complete(messages=[{"role": "user", "content": "what is 2*21"}], tools=[calc])
    assert [(c.name, json.loads(c.arguments)) for c in with_tool.tool_calls] == [("calculator", {"expression": "2*21"})]
    without = await _offline().complete(messages=[{"role": "user", "content": "what is 2*21"}], tools=[])
    assert without.tool_calls == [] and without.content


# ---- tool registry --------------------------------------------------------------------------


def test_tool_schema_comes_from_hints_and_docstring():
    registry = ToolRegistry()

    def forecast(city: str, days: int = 3, metric: bool = True) -> str:
        """Forecast the weather for a city.

        Args:
            city: The city name,
                with its country if ambiguous.
            days: How many days ahead.
        """
        return f"{city} {days} {metric}"

    t = registry.register(forecast)
    assert t.description == "Forecast the weather for a city."
    assert t.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "The city name, with its country if ambiguous."},
            "days": {"type": "integer", "default": 3, "description": "How many days ahead."},
            "metric": {"type": "boolean", "default": True},
        },
        "required": ["city"],
    }
    assert t.validate({"city": "Oslo", "days": "2"}) == {"city": "Oslo", "days": 2, "metric": True}
    with pytest.raises(ToolArgumentsError, match="days"):
        t.validate({"city": "Oslo", "days": "many"})
    with pytest.raises(ToolArgumentsError, match="Extra inputs"):
        t.validate({"city": "Oslo", "country": "NO"})


def test_tool_registry_rejects_what_a_model_cannot_call():
    registry = ToolRegistry()

    def bad(*args: int) -> None:
        """Varargs."""

    with pytest.raises(TypeError):
        registry.register(bad)
    with pytest.raises(ValueError):
        registry.register(lambda: None, name="has space")


def test_builtin_tools():
    calc = tool_registry.get("calculator").fn
    assert calc("2 * (3 + 4)") == "14"
    assert calc("sqrt(16) + 2**3") == "12"
    with pytest.raises(ValueError):
        calc("__import__('os')")
    with pytest.raises(ValueError):
        calc("9**99999")
    assert tool_registry.get("text_stats").fn("One two. Three!") == {
        "characters": 15,
        "words": 3,
        "lines": 1,
        "sentences": 2,
    }
    assert tool_registry.get("current_time").fn("UTC").endswith("+00:00")
    with pytest.raises(ValueError):
        tool_registry.get("current_time").fn("Mars/Olympus")


@pytest.mark.django_db(transaction=True)
async def test_cancelling_a_run_stops_the_model_and_keeps_the_partial_answer(agent, user, scripted_model):
    from asgiref.sync import sync_to_async

    from agents_app.engine import execute, run_prepare

    scripted_model.push_text("one two three four five six seven eight", chunk_delay=0.2)
    handle = await sync_to_async(run_prepare)(agent_id=agent.slug, user=user, message="count slowly")
    seen: list = []

    async def consume() -> None:
        async for item in execute(handle, stream=True):
            seen.append(item)

    task = asyncio.create_task(consume())
    while sum(e.name == "RunContent" for e in seen) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(task, 2)
    assert seen[-1].name == "RunCancelled"
    run = await Run.objects.aget(pk=handle.run_id)
    assert run.status == Run.Status.CANCELLED
    assert run.output.startswith("one two")
    assert run.output != "one two three four five six seven eight"
    assert seen[-1].content == run.output  # agno's RunCancelled carries the partial content
    assert [e["event"] for e in run.events] == [e.name for e in seen]
    assert [e["event_index"] for e in run.events] == list(range(len(seen)))


@pytest.mark.django_db
def test_events_are_stored_with_the_run(offline_agent, user):
    result = run_agent(agent_id=offline_agent.slug, user=user, message="what is 1+1?")
    stored = Run.objects.get(pk=result.run_id).events
    assert [e["event"] for e in stored] == [
        "RunStarted",
        "ModelRequestStarted",
        "ModelRequestCompleted",
        "ToolCallStarted",
        "ToolCallCompleted",
        "ModelRequestStarted",
        "ModelRequestCompleted",
        "RunCompleted",
    ]
    assert stored == [e.to_dict() for e in result.events]
