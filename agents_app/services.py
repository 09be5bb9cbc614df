"""Writes of agents and model configs that go beyond a plain model save (admin actions call these)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents_app.cache import agent_cache_clear
from agents_app.models import Agent, AgentHook, AgentToolRequirement, ModelConfig, ModelFallback, Team

logger = logging.getLogger(__name__)


def agent_set_active(*, agents: Iterable[Agent], is_active: bool) -> int:
    """Activate or deactivate agents; return how many changed.

    A bulk update skips `Agent.save`, so this bumps `updated_at` and clears the agent cache itself:
    a deactivated agent refuses runs in this process at once (in others within AGENT_CACHE_SECONDS).
    """
    pks = [agent.pk for agent in agents]
    with transaction.atomic():
        changed = (
            Agent.objects.filter(pk__in=pks)
            .exclude(is_active=is_active)
            .update(is_active=is_active, updated_at=timezone.now())
        )
    agent_cache_clear()
    return changed


def fallbacks_replace(*, owner: Agent | Team, models: list[ModelConfig]) -> list[ModelFallback]:
    """Make `models` the owner's fallback models, in list order (one transaction: delete, insert)."""
    owner_field = "agent" if isinstance(owner, Agent) else "team"
    with transaction.atomic():
        ModelFallback.objects.filter(**{owner_field: owner}).delete()
        created = ModelFallback.objects.bulk_create(
            [ModelFallback(**{owner_field: owner}, model=model, position=i) for i, model in enumerate(models)]
        )
    agent_cache_clear()  # a bulk write skips ModelFallback.save
    return created


def hooks_replace(*, owner: Agent | Team, phase: str, rows: list[dict[str, Any]]) -> list[AgentHook]:
    """Make `rows` (validated: hook, mode, max_retries, timeout_seconds) the owner's hooks of `phase`,
    in list order. Replacing the whole phase in one transaction (delete, then insert) never meets the
    unique (owner, phase, position/hook) constraints halfway, as reordering rows in place would."""
    owner_field = "agent" if isinstance(owner, Agent) else "team"
    with transaction.atomic():
        AgentHook.objects.filter(**{owner_field: owner}, phase=phase).delete()
        created = AgentHook.objects.bulk_create(
            [
                AgentHook(
                    **{owner_field: owner},
                    phase=phase,
                    position=position,
                    hook=row["hook"],
                    mode=row.get("mode") or AgentHook._meta.get_field("mode").default,
                    max_retries=row.get("max_retries"),
                    timeout_seconds=row.get("timeout_seconds"),
                )
                for position, row in enumerate(rows)
            ]
        )
    agent_cache_clear()  # a bulk write skips AgentHook.save
    return created


def tool_requirements_replace(*, agent: Agent, rows: list[dict[str, Any]]) -> list[AgentToolRequirement]:
    """Make `rows` (validated: tool, requirement, user_input_fields) the agent's tool-requirement
    overrides (one transaction: delete, insert)."""
    with transaction.atomic():
        AgentToolRequirement.objects.filter(agent=agent).delete()
        created = AgentToolRequirement.objects.bulk_create(
            [
                AgentToolRequirement(
                    agent=agent,
                    tool=row["tool"],
                    requirement=row["requirement"],
                    user_input_fields=list(row.get("user_input_fields") or []),
                )
                for row in rows
            ]
        )
    agent_cache_clear()  # a bulk write skips AgentToolRequirement.save
    return created
