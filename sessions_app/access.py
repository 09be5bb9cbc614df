"""Which agents, teams and workflows a request may see and run (its credentials' scope).

An edge builds an `Allowed` from the request's credentials (`allowed_for(request.auth)`: a scoped
API token's lists, otherwise everything) and hands it to the selectors and the run service, which
answer a runnable outside it exactly as one that does not exist (the kind's 404). Nothing below
the edges reads a request: the engine never sees one, and the default, `ALL`, changes nothing.

Sessions, runs and agent-private memories follow the runnable they belong to (`session_q`,
`memory_q`), so a token limited to one agent cannot read what the user did with another.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from django.db.models import Q

from sessions_app.models import ApiToken

KINDS = ("agent", "team", "workflow")


_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Allowed:
    """Slugs allowed per kind (None: every one of that kind), from the credentials' scope, minus the
    slugs `denied` per kind (restricted runnables the user is not granted: agents_app.access)."""

    agent: frozenset[str] | None = None
    team: frozenset[str] | None = None
    workflow: frozenset[str] | None = None
    agent_denied: frozenset[str] = _NONE
    team_denied: frozenset[str] = _NONE
    workflow_denied: frozenset[str] = _NONE

    @property
    def everything(self) -> bool:
        return all(self.slugs(kind) is None and not self.denied(kind) for kind in KINDS)

    def slugs(self, kind: str) -> frozenset[str] | None:
        return getattr(self, kind)  # type: ignore[no-any-return]

    def denied(self, kind: str) -> frozenset[str]:
        return getattr(self, f"{kind}_denied")  # type: ignore[no-any-return]

    def permits(self, kind: str, slug: str) -> bool:
        slugs = self.slugs(kind)
        return (slugs is None or slug in slugs) and slug not in self.denied(kind)

    def component_q(self, kind: str, field: str = "slug") -> Q:
        """Rows of one kind's table (agents, teams or workflows) that are allowed: `Q()` for all."""
        slugs, denied = self.slugs(kind), self.denied(kind)
        q = Q() if slugs is None else Q(**{f"{field}__in": sorted(slugs)})
        return q & ~Q(**{f"{field}__in": sorted(denied)}) if denied else q

    def session_q(self, prefix: str = "") -> Q:
        """Sessions (or, with prefix "session__", runs) that belong to an allowed runnable."""
        if self.everything:
            return Q()
        parts = []
        for kind in KINDS:
            slugs, denied = self.slugs(kind), self.denied(kind)
            if slugs is not None and not slugs:
                continue
            q = (
                Q(**{f"{prefix}{kind}__isnull": False})
                if slugs is None
                else Q(**{f"{prefix}{kind}__slug__in": sorted(slugs)})
            )
            if denied:
                q &= ~Q(**{f"{prefix}{kind}__slug__in": sorted(denied)})
            parts.append(q)
        return reduce(operator.or_, parts) if parts else Q(pk__in=[])

    def memory_q(self) -> Q:
        """Memories: those shared by all of the user's agents, and the private ones of allowed agents."""
        if self.agent is None and not self.agent_denied:
            return Q()
        private = Q(agent__isnull=False) if self.agent is None else Q(agent__slug__in=sorted(self.agent))
        if self.agent_denied:
            private &= ~Q(agent__slug__in=sorted(self.agent_denied))
        return Q(agent__isnull=True) | private


ALL = Allowed()

# Who may use which runnable (agents_app.access registers it: sessions_app cannot read agents_app's
# models): user -> the slugs, per kind, of restricted runnables the user is NOT granted.
_denied_source: Callable[[Any], dict[str, frozenset[str]]] | None = None


def set_denied_source(source: Callable[[Any], dict[str, frozenset[str]]] | None) -> None:
    global _denied_source
    _denied_source = source


def allowed_for(auth: Any, user: Any = None) -> Allowed:
    """What a request may see and run: its credentials' scope (DRF's `request.auth`, or the token a
    websocket authenticated with: a restricted API token's lists; anything else allows everything),
    minus the restricted runnables `user` is not granted (none for staff, or without a `user`)."""
    if isinstance(auth, ApiToken) and auth.restricted:
        allowed = Allowed(agent=frozenset(auth.agents), team=frozenset(auth.teams), workflow=frozenset(auth.workflows))
    else:
        allowed = ALL
    if user is None or _denied_source is None:
        return allowed
    denied = _denied_source(user)
    if not denied:
        return allowed
    return replace(allowed, **{f"{kind}_denied": slugs for kind, slugs in denied.items() if slugs})


def read_only(auth: Any) -> bool:
    """Whether the credentials allow reads only (a read-only API token)."""
    return isinstance(auth, ApiToken) and auth.read_only
