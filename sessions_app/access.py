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
from dataclasses import dataclass
from functools import reduce
from typing import Any

from django.db.models import Q

from sessions_app.models import ApiToken

KINDS = ("agent", "team", "workflow")


@dataclass(frozen=True, slots=True)
class Allowed:
    """Slugs allowed per kind; None: every one of that kind (the user's own rights still apply)."""

    agent: frozenset[str] | None = None
    team: frozenset[str] | None = None
    workflow: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.agent is None and self.team is None and self.workflow is None

    def slugs(self, kind: str) -> frozenset[str] | None:
        return getattr(self, kind)  # type: ignore[no-any-return]

    def permits(self, kind: str, slug: str) -> bool:
        slugs = self.slugs(kind)
        return slugs is None or slug in slugs

    def component_q(self, kind: str, field: str = "slug") -> Q:
        """Rows of one kind's table (agents, teams or workflows) that are allowed: `Q()` for all."""
        slugs = self.slugs(kind)
        return Q() if slugs is None else Q(**{f"{field}__in": sorted(slugs)})

    def session_q(self, prefix: str = "") -> Q:
        """Sessions (or, with prefix "session__", runs) that belong to an allowed runnable."""
        if self.everything:
            return Q()
        parts = [
            Q(**{f"{prefix}{kind}__isnull": False})
            if slugs is None
            else Q(**{f"{prefix}{kind}__slug__in": sorted(slugs)})
            for kind in KINDS
            if (slugs := self.slugs(kind)) is None or slugs
        ]
        return reduce(operator.or_, parts) if parts else Q(pk__in=[])

    def memory_q(self) -> Q:
        """Memories: those shared by all of the user's agents, and the private ones of allowed agents."""
        if self.agent is None:
            return Q()
        return Q(agent__isnull=True) | Q(agent__slug__in=sorted(self.agent))


ALL = Allowed()


def allowed_for(auth: Any) -> Allowed:
    """The scope of a request's credentials (DRF's `request.auth`, or the token a websocket
    authenticated with): a restricted API token's lists; anything else (a session, a DRF token, an
    unrestricted API token, none) allows everything."""
    if not isinstance(auth, ApiToken) or not auth.restricted:
        return ALL
    return Allowed(agent=frozenset(auth.agents), team=frozenset(auth.teams), workflow=frozenset(auth.workflows))


def read_only(auth: Any) -> bool:
    """Whether the credentials allow reads only (a read-only API token)."""
    return isinstance(auth, ApiToken) and auth.read_only
