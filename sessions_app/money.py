"""How costs are shown to people (admin, dashboard): a plain number with 4 decimals, no currency
sign, since prices are in whatever currency the model configs' prices are entered in. Stored and
summed values keep their 10 decimal places (Run.cost); only the display rounds."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

DISPLAY_PLACES = 4
_QUANTUM = Decimal(1).scaleb(-DISPLAY_PLACES)
NONE = "\N{EN DASH}"


def format_cost(value: Decimal | float | int | None) -> str:
    """`1234.5` -> "1,234.5000" (rounded half up); a cost too small to show at 4 decimals but not
    zero -> "<0.0001"."""
    if value is None:
        return NONE
    amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    shown = amount.quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    if amount > 0 and not shown:
        return f"<{_QUANTUM}"
    return f"{shown:,f}"


def exact_cost(value: Decimal | float | int | None) -> str:
    """The stored value in full, without trailing zeros (a tooltip next to `format_cost`)."""
    if value is None:
        return NONE
    amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
