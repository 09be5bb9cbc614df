"""Writes of agents and model configs that go beyond a plain model save (admin actions call these)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from agents_app.models import Agent
from agents_app.selectors import agent_cache_clear

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
