"""Asking a model for a JSON object that matches a schema: what the model-judged hooks (input and
output checks) and the memory hooks (memory manager, session summaries) all do."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from agents_app.hooks.errors import HookError
from agents_app.providers.base import ResponseFormat
from agents_app.providers.registry import get_provider

_validators: dict[str, Draft202012Validator] = {}


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required: what strict structured output accepts."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


async def ask_json(config: Any, *, name: str, schema: dict[str, Any], system: str, user: str) -> dict[str, Any]:
    """The answer of the model `config` (a ModelConfig) as structured output named `name`; a
    HookError (retried like any hook failure) when it is not JSON or misses the schema. A schema is
    compiled once per name."""
    provider = get_provider(config)
    response = await provider.complete(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        tools=[],
        response_format=ResponseFormat(name=name, schema=schema),
    )
    try:
        data = json.loads(response.content)
    except ValueError:
        raise HookError(f"The model's answer for {name} is not JSON.") from None
    validator = _validators.get(name) or _validators.setdefault(name, Draft202012Validator(schema))
    error = next(iter(validator.iter_errors(data)), None)
    if error is not None:
        raise HookError(f"The model's answer for {name} does not match its schema: {error.message}")
    return data
