"""A tool for the agno parity server (tests/parity_site.py): it waits for a person's confirmation."""

from __future__ import annotations

from agents_app.tools.registry import tool


@tool(name="parity_refund", requires_confirmation=True)
def parity_refund(order_id: int) -> str:
    """Refund an order.

    Args:
        order_id: The order.
    """
    return f"refunded order {order_id}"
