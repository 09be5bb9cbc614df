"""Who may use which agent, team or workflow: every signed-in user, or, when its `access` is
restricted, the users and groups it names (and staff).

Why a "denied" list per user rather than a permission check at each call site: the request's scope
(sessions_app.access.Allowed) already reaches every selector, the run service, the websocket and
agno's routes for API tokens' scopes, and a runnable outside it is a 404 everywhere. The rights of
the user are folded into the same object, so nothing lists, shows, runs, resumes or continues a
runnable the user may not use, with no second mechanism to keep in step.

What it costs: the restricted runnables (with their users and groups) are read at most every
AGENT_CACHE_SECONDS per process, like agents (0 queries when none is restricted); a user who meets
one costs one query for their groups, cached on the user object for the rest of the request.
"""

from __future__ import annotations

import time
from typing import Any

from agents_app.cache import agent_cache_get, agent_cache_put
from agents_app.models import Access, Agent, Team, Workflow
from sessions_app.conf import agentos_settings

_CACHE_KEY = "\x00access"
_MODELS = {"agent": Agent, "team": Team, "workflow": Workflow}

# kind -> [(slug, user ids, group ids)] of its restricted runnables
Restricted = dict[str, list[tuple[str, frozenset[Any], frozenset[int]]]]


def restricted_runnables() -> Restricted:
    """Every restricted runnable with who is granted it, from the per-process cache."""
    now = time.monotonic()
    found = agent_cache_get(_CACHE_KEY, now)
    if found is None:
        found = {}
        for kind, model in _MODELS.items():
            rows = model.objects.filter(access=Access.RESTRICTED).prefetch_related("allowed_users", "allowed_groups")
            found[kind] = [
                (
                    row.slug,
                    frozenset(u.pk for u in row.allowed_users.all()),
                    frozenset(g.pk for g in row.allowed_groups.all()),
                )
                for row in rows
            ]
        agent_cache_put(_CACHE_KEY, found, now + float(agentos_settings.AGENT_CACHE_SECONDS))
    return found


def _group_ids(user: Any) -> frozenset[int]:
    cached = getattr(user, "_agentos_group_ids", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("pk", flat=True))
        user._agentos_group_ids = cached
    return cached


def denied_for(user: Any) -> dict[str, frozenset[str]]:
    """The restricted runnables `user` is not granted, per kind (empty for staff, and when nothing
    is restricted). Anonymous users are granted none."""
    restricted = restricted_runnables()
    if not any(restricted.values()) or getattr(user, "is_staff", False):
        return {}
    authenticated = getattr(user, "is_authenticated", False)
    denied: dict[str, frozenset[str]] = {}
    for kind, rows in restricted.items():
        out = set()
        for slug, users, groups in rows:
            if authenticated and user.pk in users:
                continue
            if authenticated and groups and groups & _group_ids(user):
                continue
            out.add(slug)
        if out:
            denied[kind] = frozenset(out)
    return denied
