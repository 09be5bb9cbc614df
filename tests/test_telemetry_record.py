"""Recording telemetry events: one per run of every kind, no contents unless allowed, zero queries
when off, one INSERT when on, never a failed run because of telemetry, one launch event per process."""

from __future__ import annotations

import asyncio
import logging
import types
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.models import ModelConfig
from agents_app.runs import run_agent, stream_agent
from sessions_app.models import Message, Run
from telemetry_app import __version__
from telemetry_app import services as telemetry_services
from telemetry_app.conf import telemetry_site_id
from telemetry_app.models import TelemetryEvent
from telemetry_app.schemas import EventType, LaunchEvent, RunCreatedEvent
from telemetry_app.services import telemetry_record_launch, telemetry_record_run, telemetry_reset_launch
from tests.factories import AgentFactory, ModelConfigFactory


@pytest.fixture
def telemetry_on(settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)  # tests of run events count run events only
    yield
    telemetry_reset_launch(pending=False)


def _sql(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def _run_payload(run: Run) -> dict:
    """What the event of a finished agent run must say, from the stored run."""
    return {
        # A run with a configuration version (every run of the engine) is a version 3 event.
        "schema_version": 3,
        "config_version": run.config_version.number,
        "cost": None,
        "cache_read_tokens": 0,
        "kind": "run_created",
        "event_type": "agent",
        "run_id": str(run.pk),
        "session_id": str(run.session_id),
        "component_id": run.agent.slug,
        "model": run.model,
        "provider": run.provider,
        "status": run.status,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "total_tokens": run.total_tokens,
        "time_to_first_token": run.time_to_first_token,
        "duration": run.duration,
        "error_type": run.error_type,
        "content": None,
    }


@pytest.mark.django_db
def test_an_agent_run_records_one_event_with_its_metrics_and_no_contents(offline_agent, user, telemetry_on):
    result = run_agent(agent_id=offline_agent.slug, user=user, message="what is 6*7? zebra")
    event = TelemetryEvent.objects.get()
    run = Run.objects.get(pk=result.run_id)
    assert run.input_tokens > 0 and run.output_tokens > 0 and run.duration > 0
    payload = dict(event.payload)
    assert uuid.UUID(payload.pop("event_id")) == event.id
    assert payload.pop("created_at")
    assert payload == _run_payload(run)
    assert (event.kind, event.event_type, event.delivered_at, event.attempts) == ("run_created", "agent", None, 0)
    assert "zebra" not in str(event.payload) and result.content not in str(event.payload)
    RunCreatedEvent.model_validate(event.payload)


@pytest.mark.django_db
def test_contents_are_recorded_only_when_the_setting_allows(offline_agent, user, telemetry_on, settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_INCLUDE_CONTENT": True}
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hello there")
    assert TelemetryEvent.objects.get().payload["content"] == {"input": "hello there", "output": result.content}


@pytest.mark.django_db
def test_a_failed_run_records_its_status_and_error_type(user, telemetry_on, scripted_model):
    model = ModelConfigFactory(
        provider=ModelConfig.Provider.OPENAI, base_url=scripted_model.base_url, model_id="m", max_retries=0
    )
    agent = AgentFactory(slug="flaky", model=model)
    scripted_model.push_error(500, "boom")
    result = run_agent(agent_id="flaky", user=user, message="hi")
    assert result.status == "error"
    payload = TelemetryEvent.objects.get().payload
    assert (payload["status"], payload["component_id"], payload["provider"], payload["model"]) == (
        "error",
        agent.slug,
        "openai",
        "m",
    )
    assert payload["error_type"] == result.error_type != ""
    assert "boom" not in str(payload)


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_run_records_its_time_to_first_token(offline_agent, user, telemetry_on):
    events = [e async for e in stream_agent(agent_id=offline_agent.slug, user=user, message="tell me a story")]
    assert events[-1].name == "RunCompleted"
    event = await TelemetryEvent.objects.aget()
    run = await Run.objects.aget(pk=events[0].run_id)
    assert event.payload["time_to_first_token"] == run.time_to_first_token > 0
    assert event.payload["duration"] == run.duration >= run.time_to_first_token


@pytest.mark.django_db(transaction=True)
async def test_a_cancelled_run_records_status_cancelled(agent, user, scripted_model, telemetry_on):
    from asgiref.sync import sync_to_async

    from agents_app.engine import execute, run_prepare

    scripted_model.push_text("one two three four five six", chunk_delay=0.2)
    handle = await sync_to_async(run_prepare)(agent_id=agent.slug, user=user, message="count slowly")
    seen: list = []

    async def consume() -> None:
        async for item in execute(handle, stream=True):
            seen.append(item)

    task = asyncio.create_task(consume())
    while not any(e.name == "RunContent" for e in seen):
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(task, 2)
    payload = (await TelemetryEvent.objects.aget()).payload
    assert (payload["status"], payload["error_type"], payload["run_id"]) == (
        "cancelled",
        "cancelled",
        str(handle.run_id),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", list(EventType))
def test_every_kind_of_run_can_be_recorded_through_the_service(event_type, telemetry_on):
    """Teams, workflows and evals (later features) call the same service as the agent engine."""
    run_id = uuid.uuid4()
    assert telemetry_record_run(
        event_type=event_type,
        run_id=run_id,
        session_id=None,
        component_id=f"my-{event_type}",
        model="gpt-x",
        provider="openai",
        status="completed",
        input_tokens=10,
        output_tokens=5,
        time_to_first_token=0.25,
        duration=1.5,
        input="secret question",
        output="secret answer",
    )
    event = TelemetryEvent.objects.get()
    assert event.event_type == event_type.value
    parsed = RunCreatedEvent.model_validate(event.payload)
    assert (parsed.event_type, parsed.run_id, parsed.component_id, parsed.total_tokens, parsed.content) == (
        event_type,
        str(run_id),
        f"my-{event_type}",
        15,
        None,
    )


@pytest.mark.django_db
def test_off_means_zero_queries_and_on_means_one_insert(offline_agent, user, settings):
    first = run_agent(agent_id=offline_agent.slug, user=user, message="start")
    with CaptureQueriesContext(connection) as off:
        run_agent(agent_id=offline_agent.slug, user=user, message="again", session_id=first.session_id)
    assert not [q for q in off.captured_queries if "telemetry" in q["sql"].lower()]
    assert TelemetryEvent.objects.count() == 0

    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)
    with CaptureQueriesContext(connection) as on:
        run_agent(agent_id=offline_agent.slug, user=user, message="once more", session_id=first.session_id)
    added = [q for q in _sql(on) if q not in _sql(off)]
    assert len(_sql(on)) == len(_sql(off)) + 1, added
    assert [q for q in _sql(on) if "telemetry" in q.lower()] == [
        q for q in _sql(on) if q.startswith('INSERT INTO "telemetry_app_telemetryevent"')
    ]
    assert TelemetryEvent.objects.count() == 1


@pytest.mark.django_db
def test_off_makes_no_query_at_all_from_the_service(settings):
    with CaptureQueriesContext(connection) as ctx:
        assert (
            telemetry_record_run(
                event_type="agent",
                run_id="r",
                session_id=None,
                component_id="a",
                model="",
                provider="",
                status="completed",
                input_tokens=0,
                output_tokens=0,
                time_to_first_token=None,
                duration=None,
            )
            is False
        )
        assert telemetry_record_launch() is False
    assert ctx.captured_queries == []


@pytest.mark.django_db(transaction=True)
def test_a_failure_to_record_never_fails_or_rolls_back_the_run(offline_agent, user, telemetry_on, monkeypatch, caplog):
    """A real database error (a duplicate key) inside the run's transaction: the savepoint keeps the
    run's own writes, the error is logged, the caller sees a normal completed run."""
    taken = uuid.uuid4()
    TelemetryEvent.objects.create(id=taken, kind="run_created", event_type="agent", payload={})
    monkeypatch.setattr(telemetry_services, "uuid", types.SimpleNamespace(uuid4=lambda: taken, UUID=uuid.UUID))
    with caplog.at_level(logging.ERROR, logger="telemetry_app.services"):
        result = run_agent(agent_id=offline_agent.slug, user=user, message="what is 2+2?")
    assert result.status == "completed" and "4" in result.content
    run = Run.objects.get(pk=result.run_id)
    assert run.status == Run.Status.COMPLETED and run.finished_at is not None
    assert Message.objects.filter(run=run).count() == 4  # user, assistant tool call, tool, answer
    assert TelemetryEvent.objects.count() == 1
    assert "Could not record a telemetry event" in caplog.text


@pytest.mark.django_db
def test_a_schema_violation_is_logged_not_raised(telemetry_on, caplog):
    with caplog.at_level(logging.ERROR, logger="telemetry_app.services"):
        ok = telemetry_record_run(
            event_type="banana",
            run_id="r",
            session_id=None,
            component_id="a",
            model="",
            provider="",
            status="completed",
            input_tokens=-1,
            output_tokens=0,
            time_to_first_token=None,
            duration=None,
        )
    assert ok is False and TelemetryEvent.objects.count() == 0
    assert "Could not record a telemetry event" in caplog.text


@pytest.mark.django_db
def test_the_launch_event_is_recorded_once_per_process_with_the_first_run(offline_agent, user, telemetry_on):
    AgentFactory(slug="asleep", is_active=False)
    AgentFactory(slug="another")
    telemetry_reset_launch()
    run_agent(agent_id=offline_agent.slug, user=user, message="one")
    run_agent(agent_id=offline_agent.slug, user=user, message="two")
    assert sorted(TelemetryEvent.objects.values_list("kind", flat=True)) == ["launch", "run_created", "run_created"]
    launch = LaunchEvent.model_validate(TelemetryEvent.objects.get(kind="launch").payload)
    assert (launch.site_id, launch.version, launch.agents, launch.teams, launch.workflows) == (
        telemetry_site_id(),
        __version__,
        ["another", "offline"],
        [],
        [],
    )
    assert telemetry_record_launch() is False  # already recorded by this process
    telemetry_reset_launch()
    assert telemetry_record_launch() is True
    assert TelemetryEvent.objects.filter(kind="launch").count() == 2


def test_the_site_id_is_stable_and_overridable(settings):
    first = telemetry_site_id()
    assert first == telemetry_site_id() and uuid.UUID(first).version == 4
    assert settings.SECRET_KEY not in first
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_SITE_ID": "acme-prod"}
    assert telemetry_site_id() == "acme-prod"
