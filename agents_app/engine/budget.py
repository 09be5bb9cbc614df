"""Per-run budgets: the most model calls, tokens and wall-clock seconds one run may use.

Why: a model that keeps asking for tools, a team whose leader keeps delegating, or a provider that
answers slowly forever would otherwise spend without bound. Each agent and team has its limits
(empty: the site's defaults, AGENTOS["RUN_BUDGET"]); a workflow uses the site's. A member or step
run charges its own budget and every ancestor's, so a team's budget bounds its members' work too.
A run that reaches a limit ends with `budget_exceeded`, keeping its partial output and events.

The checks are a few integer comparisons per model call and one clock read per event; nothing is
queried.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from sessions_app.conf import agentos_settings


class BudgetExceeded(Exception):
    """The run (or a run it belongs to) reached one of its limits."""

    error_type = "budget_exceeded"


class RunBudget:
    """One run's limits and what it has used; `parent` is the budget of the run it belongs to."""

    __slots__ = (
        "cost",
        "deadline",
        "label",
        "max_model_calls",
        "max_seconds",
        "max_tokens",
        "max_tool_calls",
        "model_calls",
        "parent",
        "quota_cost",
        "quota_tokens",
        "tokens",
        "tool_calls",
    )

    def __init__(
        self,
        *,
        label: str,
        max_model_calls: int | None,
        max_tokens: int | None,
        max_seconds: float | None,
        max_tool_calls: int | None = None,
        parent: RunBudget | None = None,
    ) -> None:
        self.label = label
        self.max_model_calls = max_model_calls
        self.max_tokens = max_tokens
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds if max_seconds else None
        self.max_tool_calls = max_tool_calls
        self.model_calls = 0
        self.tool_calls = 0
        self.tokens = 0
        self.cost = Decimal(0)
        # What the run's quotas still allow (agents_app.quotas), set by the run service; None: no cap.
        self.quota_tokens: int | None = None
        self.quota_cost: Decimal | None = None
        self.parent = parent

    @classmethod
    def for_component(cls, component: Any, *, kind: str, parent: RunBudget | None = None) -> RunBudget:
        """The component's own limits where it sets them, else the site's defaults."""
        defaults = agentos_settings.RUN_BUDGET or {}

        def limit(field: str, key: str) -> Any:
            own = getattr(component, field, None)
            return own if own is not None else defaults.get(key)

        return cls(
            label=f"{kind} {getattr(component, 'slug', '')!r}",
            max_model_calls=limit("max_model_calls", "MODEL_CALLS"),
            max_tokens=limit("max_run_tokens", "TOKENS"),
            max_seconds=limit("max_run_seconds", "SECONDS"),
            max_tool_calls=defaults.get("TOOL_CALLS"),
            parent=parent,
        )

    def _chain(self) -> list[RunBudget]:
        chain, node = [], self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def start_model_call(self) -> None:
        """Count a model call about to be made; refuse it if any budget in the chain is spent."""
        self.check_time()
        for budget in self._chain():
            if budget.max_model_calls is not None and budget.model_calls >= budget.max_model_calls:
                raise BudgetExceeded(
                    f"The {budget.label} run reached its limit of {budget.max_model_calls} model calls."
                )
        for budget in self._chain():
            budget.model_calls += 1

    def start_tool_calls(self, count: int) -> None:
        """Count tool calls about to run (an agent's tools, a team leader's delegations); refuse them
        if any budget in the chain would go over (AGENTOS["RUN_BUDGET"]["TOOL_CALLS"])."""
        self.check_time()
        for budget in self._chain():
            if budget.max_tool_calls is not None and budget.tool_calls + count > budget.max_tool_calls:
                raise BudgetExceeded(f"The {budget.label} run reached its limit of {budget.max_tool_calls} tool calls.")
        for budget in self._chain():
            budget.tool_calls += count

    def charge(self, *, tokens: int, cost: Decimal) -> None:
        """Add a call's tokens and cost; the run ends if that took any budget in the chain over its
        limit, or over what its quotas allow."""
        problem = None
        for budget in self._chain():
            budget.tokens += tokens
            budget.cost += cost
            if problem is not None:
                continue
            if budget.max_tokens is not None and budget.tokens > budget.max_tokens:
                problem = f"The {budget.label} run used {budget.tokens} tokens; its limit is {budget.max_tokens}."
            elif budget.quota_tokens is not None and budget.tokens > budget.quota_tokens:
                problem = (
                    f"The {budget.label} run used {budget.tokens} tokens; its quota allowed {budget.quota_tokens}."
                )
            elif budget.quota_cost is not None and budget.cost > budget.quota_cost:
                problem = f"The {budget.label} run cost {budget.cost:f}; its quota allowed {budget.quota_cost:f}."
        if problem is not None:
            raise BudgetExceeded(problem)

    def check_time(self) -> None:
        now = time.monotonic()
        for budget in self._chain():
            if budget.deadline is not None and now > budget.deadline:
                raise BudgetExceeded(f"The {budget.label} run reached its limit of {budget.max_seconds:g} seconds.")

    def remaining_seconds(self) -> float | None:
        """Seconds until the nearest deadline in the chain (None: no deadline)."""
        deadlines = [b.deadline for b in self._chain() if b.deadline is not None]
        return max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None
