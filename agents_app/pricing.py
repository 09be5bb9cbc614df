"""What a model call cost: a model config's prices per million tokens times the call's usage.

Why Decimal: costs are added up over millions of runs (per agent, user and day); binary floats
drift. Each call is priced with the config that answered it (a fallback or a parser model has its
own prices), so a run's cost is the sum of its calls'. A config with no prices costs 0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
# Stored with 10 decimal places (Run.cost): a token of a $0.01-per-million model still counts.
QUANTUM = Decimal("0.0000000001")


def call_cost(config: Any, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0) -> Decimal:
    """The cost of one call of `config`. Cached input tokens are part of `input_tokens` (as the
    providers count them) and are priced at the cached price when the config has one."""
    input_price = config.input_price or ZERO
    output_price = config.output_price or ZERO
    if not (input_price or output_price):
        return ZERO
    cached = min(max(cache_read_tokens, 0), max(input_tokens, 0))
    cached_price = config.cached_input_price if config.cached_input_price is not None else input_price
    total = (input_tokens - cached) * input_price + cached * cached_price + output_tokens * output_price
    return (total / MILLION).quantize(QUANTUM)


def as_number(cost: Decimal) -> float:
    """A cost as JSON carries it (event metrics, telemetry): a float, rounded to the stored precision."""
    return float(cost.quantize(QUANTUM))
