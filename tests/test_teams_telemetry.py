"""Teams and workflows in telemetry: their runs record `team` / `workflow` events with their own
tokens; their member and step runs record their own `agent` events, so nothing is counted twice."""

from __future__ import annotations

import pytest

from agents_app.runs import run_team, run_workflow
from sessions_app.models import Run
from telemetry_app.models import TelemetryEvent
from telemetry_app.schemas import RunCreatedEvent
from telemetry_app.services import telemetry_reset_launch
from tests.factories import (
    AgentFactory,
    ModelConfigFactory,
    TeamFactory,
    TeamMemberFactory,
    WorkflowFactory,
    WorkflowStepFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def telemetry_on(settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)
    yield
    telemetry_reset_launch(pending=False)


def test_a_team_run_records_a_team_event_and_its_members_agent_events(user, telemetry_on):
    model = ModelConfigFactory(name="offline")
    team = TeamFactory(slug="crew", model=model, mode="collaborate")
    for slug in ("a", "b"):
        TeamMemberFactory(team=team, agent=AgentFactory(slug=slug, model=model))
    result = run_team(team_id="crew", user=user, message="what is 6*7?")
    assert result["status"] == "completed"
    events = {e.payload["run_id"]: e.payload for e in TelemetryEvent.objects.all()}
    for payload in events.values():
        RunCreatedEvent.model_validate(payload)
    team_event = events[result["run_id"]]
    run = Run.objects.get(pk=result["run_id"])
    assert (team_event["event_type"], team_event["component_id"], team_event["status"]) == ("team", "crew", "completed")
    assert team_event["input_tokens"] == run.input_tokens > 0  # the leader's own call
    children = Run.objects.filter(parent_run=run)
    assert sorted((events[str(c.pk)]["event_type"], events[str(c.pk)]["component_id"]) for c in children) == [
        ("agent", "a"),
        ("agent", "b"),
    ]
    assert len(events) == 3


def test_a_workflow_run_records_a_workflow_event(user, telemetry_on):
    model = ModelConfigFactory(name="offline")
    workflow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=AgentFactory(slug="a", model=model), order=0)
    result = run_workflow(workflow_id="flow", user=user, message="hello")
    assert result["status"] == "completed"
    kinds = sorted((e.payload["event_type"], e.payload["component_id"]) for e in TelemetryEvent.objects.all())
    assert kinds == [("agent", "a"), ("workflow", "flow")]
    workflow_event = TelemetryEvent.objects.get(event_type="workflow").payload
    assert (workflow_event["input_tokens"], workflow_event["model"], workflow_event["status"]) == (0, "", "completed")
