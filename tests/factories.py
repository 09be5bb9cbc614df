"""factory_boy factories for the apps' models."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from agents_app.models import Agent, ModelConfig


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-for-tests-123")


class ModelConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelConfig

    name = factory.Sequence(lambda n: f"model-{n}")
    provider = ModelConfig.Provider.OFFLINE
    model_id = "offline-demo"
    timeout_seconds = 5.0
    max_retries = 0


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda o: f"Agent {o.slug}")
    model = factory.SubFactory(ModelConfigFactory)
    instructions = "You are a test agent."
    tools = factory.LazyFunction(list)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents_app.Team"

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda o: f"Team {o.slug}")
    model = factory.SubFactory(ModelConfigFactory)
    instructions = "You lead a test team."
    mode = "coordinate"


class TeamMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents_app.TeamMember"

    team = factory.SubFactory(TeamFactory)
    order = factory.Sequence(lambda n: n)


class WorkflowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents_app.Workflow"

    slug = factory.Sequence(lambda n: f"workflow-{n}")
    name = factory.LazyAttribute(lambda o: f"Workflow {o.slug}")


class WorkflowStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents_app.WorkflowStep"

    workflow = factory.SubFactory(WorkflowFactory)
    name = factory.Sequence(lambda n: f"step-{n}")
    order = factory.Sequence(lambda n: n)


def attach_hooks(agent: Agent, *, pre: list[str] | None = None, post: list[str] | None = None, **row: Any) -> None:
    """Give `agent` these hooks (by name, in order) through the same service the staff API uses;
    a phase not given is left as it is. `row` fields (mode, max_retries, timeout_seconds) apply to
    every row given."""
    from agents_app.services import hooks_replace

    for phase, names in (("pre", pre), ("post", post)):
        if names is not None:
            hooks_replace(owner=agent, phase=phase, rows=[{"hook": name, **row} for name in names])
