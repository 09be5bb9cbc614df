"""Reads of agents. Agents are read on every run, so they are cached per process briefly."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db.models import QuerySet

from agents_app.models import Agent
from sessions_app.conf import agentos_settings
from sessions_app.errors import NotFoundError

_cache: dict[str, tuple[float, Agent]] = {}
_cache_lock = threading.Lock()


def agent_cache_clear() -> None:
    """Forget cached agents; called when an agent or model config is saved in this process.

    Other processes see the change within AGENT_CACHE_SECONDS.
    """
    with _cache_lock:
        _cache.clear()


class AgentNotFound(NotFoundError):
    code = "unknown_agent"
    default_detail = "No such agent."


def agent_get_active(*, agent_id: str) -> Agent:
    """The active agent with its model config, from the cache when fresh (zero queries)."""
    now = time.monotonic()
    hit = _cache.get(agent_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    agent = Agent.objects.select_related("model").filter(slug=agent_id, is_active=True).first()
    if agent is None:
        raise AgentNotFound(f"No active agent with id {agent_id!r}.")
    ttl = float(agentos_settings.AGENT_CACHE_SECONDS)
    if ttl > 0:
        with _cache_lock:
            _cache[agent_id] = (now + ttl, agent)
    return agent


def agent_list_for_user(*, user: Any) -> QuerySet[Agent]:
    """Staff see every agent (to manage them); everyone else sees active ones."""
    qs = Agent.objects.select_related("model")
    if getattr(user, "is_staff", False):
        return qs
    return qs.filter(is_active=True)
