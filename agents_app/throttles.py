"""Rate limits on starting runs: per user, and per user and runnable, in runs per minute and hour.

Why DRF's throttling, called from the run service rather than as a view's `throttle_classes`: runs
start on REST, the websocket, agno's routes and the admin's "try it", and only the first has DRF
views; one check in `agents_app.runs` covers them all, with DRF's proven sliding-window algorithm
(`SimpleRateThrottle`) on Django's cache. The cache is what makes limits hold across processes:
Redis in production (`DJANGO_CACHE_URL`), local memory in the embedded mode (one process).

Limits (DRF's rate syntax, e.g. "30/min", "500/hour"):
- AGENTOS["RUN_RATE_LIMITS"]["USER"]: a user's runs of anything;
- AGENTOS["RUN_RATE_LIMITS"]["RUNNABLE"]: a user's runs of one agent, team or workflow, unless the
  component sets its own (`rate_limit`, e.g. "5/min, 50/hour"; "off": none).

DRF's throttle reads, then writes the window: requests racing from several processes within the
same few milliseconds can each see the old window, so a limit may be exceeded by that race's width.
"""

from __future__ import annotations

import time
from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from agents_app.cache import agent_cache_get, agent_cache_put
from agents_app.models import Agent, Team, Workflow, parse_rates
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError

_OVERRIDES_KEY = "\x00rate-limits"
_MODELS = {"agent": Agent, "team": Team, "workflow": Workflow}


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429


class _RunThrottle(SimpleRateThrottle):
    """DRF's sliding window for one key and one rate (no request or view needed)."""

    def __init__(self, key: str, rate: str) -> None:
        self.rate = rate
        self._key = key
        super().__init__()

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self._key


def _overrides() -> dict[tuple[str, str], str]:
    """Every component's own rate limit, read at most every AGENT_CACHE_SECONDS per process."""
    now = time.monotonic()
    found = agent_cache_get(_OVERRIDES_KEY, now)
    if found is None:
        found = {}
        for kind, model in _MODELS.items():
            for slug, rate in model.objects.exclude(rate_limit="").values_list("slug", "rate_limit"):
                found[(kind, slug)] = rate
        agent_cache_put(_OVERRIDES_KEY, found, now + float(agentos_settings.AGENT_CACHE_SECONDS))
    return found


class RateWindows:
    """The windows a run start was checked against; `record()` counts the start in all of them,
    once it has happened (a start refused later, or deferred behind a busy session, counts nothing)."""

    __slots__ = ("throttles",)

    def __init__(self, throttles: list[_RunThrottle]) -> None:
        self.throttles = throttles

    def record(self) -> None:
        for throttle in self.throttles:
            # Read again: another start may have been recorded since the check.
            throttle.history = throttle.cache.get(throttle.key, [])
            throttle.now = throttle.timer()
            throttle.throttle_success()


def rate_check(*, user: Any, kind: str, component_id: str) -> RateWindows | None:
    """Check one run start of `user` on `kind` `component_id` against every limit that applies:
    RateLimited (429, with `retry_after` seconds) if one is reached. Counts nothing: call `record()`
    on the result once the run has started (None: no limit applies)."""
    limits = agentos_settings.RUN_RATE_LIMITS or {}
    user_key = f"agentos:runs:user:{user.pk}"
    checks = [(f"{user_key}:{rate}", rate, "your runs") for rate in limits.get("USER") or []]
    own = _overrides().get((kind, component_id))
    runnable_rates = parse_rates(own) if own is not None else list(limits.get("RUNNABLE") or [])
    checks += [
        (f"{user_key}:{kind}:{component_id}:{rate}", rate, f"your runs of {kind} {component_id!r}")
        for rate in runnable_rates
    ]
    if not checks:
        return None
    throttles = [(_RunThrottle(key, rate), rate, what) for key, rate, what in checks]
    # Every window is read first; the start is recorded only if all of them allow it.
    for throttle, rate, what in throttles:
        throttle.key = throttle._key
        throttle.history = throttle.cache.get(throttle.key, [])
        throttle.now = throttle.timer()
        while throttle.history and throttle.history[-1] <= throttle.now - throttle.duration:
            throttle.history.pop()
        if len(throttle.history) >= throttle.num_requests:
            wait = throttle.wait() or 1
            raise RateLimited(
                f"Too many runs: {what} are limited to {rate}. Try again in {int(wait) + 1} s.",
                retry_after=int(wait) + 1,
                limit=rate,
            )
    return RateWindows([throttle for throttle, _, _ in throttles])
