"""The per-process cache of the agents runs read (agents_app.selectors.agent_get_active).

Its own module, below the models: a model's save() clears it, and the selectors fill it, so neither
has to import the other's module back.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import transaction

_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def agent_cache_get(agent_id: str, now: float) -> Any | None:
    """The cached agent, if it is still fresh at monotonic time `now`."""
    hit = _cache.get(agent_id)
    return hit[1] if hit is not None and hit[0] > now else None


def agent_cache_put(agent_id: str, agent: Any, expires: float) -> None:
    with _lock:
        _cache[agent_id] = (expires, agent)


def agent_cache_clear() -> None:
    """Forget cached agents; called when an agent, one of its hook rows or a model config is saved in
    this process. Other processes see the change within AGENT_CACHE_SECONDS. Cleared now and again
    when the writing transaction commits, so a run that read the old rows meanwhile cannot keep them
    cached."""
    _clear()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_clear)


def _clear() -> None:
    with _lock:
        _cache.clear()
