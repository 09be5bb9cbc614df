"""Asking a model for a JSON object that matches a schema: what the model-judged hooks (input and
output checks) and the memory hooks (memory manager, session summaries) all do."""

from __future__ import annotations

import json
import logging
from typing import Any

from jsonschema import Draft202012Validator

from agents_app.providers.base import ResponseFormat
from agents_app.providers.registry import get_provider
from agents_app.providers.structured import (
    OutputInvalid,
    ValidationProblem,
    clamp_to_schema,
    correction,
    parse_checked,
)

logger = logging.getLogger(__name__)

_validators: dict[str, Draft202012Validator] = {}


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required: what strict structured output accepts."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


async def ask_json(
    config: Any, *, name: str, schema: dict[str, Any], system: str, user: str, clamp: bool = False
) -> dict[str, Any]:
    """The answer of the model `config` (a ModelConfig) as structured output named `name`. An answer
    that misses the schema is asked for once more with the validation error shown; then
    OutputInvalid (the run ends with `output_invalid`, not a hook error). `clamp`: numbers outside
    their schema's bounds are brought within them instead (a judge's confidence of 1.5 is a
    confident verdict, not a broken one). A schema is compiled once per name."""
    provider = get_provider(config)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    validator = _validators.get(name) or _validators.setdefault(name, Draft202012Validator(schema))
    response_format = ResponseFormat(name=name, schema=schema)
    for attempt in (1, 2):
        response = await provider.complete(messages=messages, tools=[], response_format=response_format)
        try:
            return parse_checked(response.content, validator, who=f"The model's answer for {name}")
        except ValidationProblem as problem:
            if clamp:
                fixed = _clamped(response.content, schema, validator)
                if fixed is not None:
                    logger.info("Structured output %s: %s", name, "; ".join(fixed[1]))
                    return fixed[0]
            if attempt == 2:
                raise OutputInvalid(f"{problem} (after one corrected retry)") from None
            messages += [{"role": "assistant", "content": response.content}, correction(problem)]
    raise AssertionError("unreachable")


def _clamped(text: str, schema: dict[str, Any], validator: Draft202012Validator) -> tuple[Any, list[str]] | None:
    """The answer with out-of-range numbers clamped, if that alone makes it valid."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    fixed, notes = clamp_to_schema(data, schema)
    if notes and not any(True for _ in validator.iter_errors(fixed)):
        return fixed, notes
    return None
