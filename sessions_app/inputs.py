"""The one place that decides whether untrusted text and JSON can enter the system, used by REST,
the websocket and agno's routes alike (before: a guard per edge, and some edges had none).

Why these rules: PostgreSQL refuses a NUL character in text; a lone surrogate (`"\\ud800"`) cannot
be encoded as UTF-8, so it fails wherever it is written or sent; JSON nested thousands of levels
deep makes Python's json (and so Django's JSONField) raise RecursionError. Each is a 400-class
`InvalidInput` here, with nothing written, rather than a 500 later.
"""

from __future__ import annotations

from typing import Any

import orjson

from sessions_app.errors import DomainError

# Deeper JSON than any real payload needs, well below Python's recursion limit (Django serializes
# JSON fields with the json module).
MAX_JSON_DEPTH = 64


class InvalidInput(DomainError, ValueError):
    """Text or JSON that cannot be accepted (the field says which)."""

    code = "invalid_input"
    status = 400

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


def clean_text(value: str, *, field: str = "message") -> str:
    """`value`, if it holds no NUL character and no lone surrogate."""
    if "\x00" in value:
        raise InvalidInput("Text must not contain a NUL character.", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("Text must be valid Unicode (it has a lone surrogate).", field=field) from None
    return value


def clean_json(value: Any, *, field: str, depth: int = 0) -> Any:
    """`value` (parsed JSON), if it nests at most MAX_JSON_DEPTH levels and its strings (keys too)
    pass `clean_text`."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"JSON nested more than {MAX_JSON_DEPTH} levels deep.", field=field)
    if isinstance(value, str):
        clean_text(value, field=field)
    elif isinstance(value, dict):
        for key, item in value.items():
            clean_text(str(key), field=field)
            clean_json(item, field=field, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            clean_json(item, field=field, depth=depth + 1)
    return value


def parse_json(text: str | bytes, *, field: str) -> Any:
    """Parse JSON text strictly (orjson: no NaN, no lone surrogates, its own nesting cap), then
    `clean_json` it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Invalid JSON: {exc}", field=field) from None
    return clean_json(value, field=field)
