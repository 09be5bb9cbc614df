"""factory_boy factories for the apps' models."""

from __future__ import annotations

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
