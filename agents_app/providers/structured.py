"""Structured output that must match a JSON schema: checked, corrected once, then refused clearly.

Every place that asks a model for JSON uses this: an agent's or team's answer with an output
schema, a parser model, the model-judged hooks and the memory hooks. Models get structured output
wrong now and then (a number over its maximum, a missing key, prose around the JSON); one more
try, with the validation error shown to the model, usually fixes it. If it does not, the run ends
with `output_invalid` (a 502: the model's side), keeping what the model said, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from agents_app.providers.base import ModelError

CORRECTION = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with only a JSON object that matches the schema you were given."
)


class OutputInvalid(ModelError):
    """Structured output that still failed validation after one corrected retry."""

    error_type = "output_invalid"


class ValidationProblem(ValueError):
    """One validation failure of one answer: what to tell the model on the retry."""


def parse_checked(text: str, validator: Draft202012Validator, *, who: str = "The model's answer") -> Any:
    """`text` as JSON that `validator` accepts; ValidationProblem (saying where) when it is not."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationProblem(f"{who} is not valid JSON: {exc}") from None
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(map(str, first.path)) or "(root)"
        raise ValidationProblem(f"{who} does not match the output schema at {where}: {first.message}")
    return data


def correction(problem: ValidationProblem) -> dict[str, Any]:
    """The user message that asks for a corrected answer."""
    return {"role": "user", "content": CORRECTION.format(error=problem)}


def clamp_to_schema(data: Any, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """`data` with each number of an object's properties brought within its `minimum`/`maximum`
    (for verdicts from a judge: a confidence of 1.5 means "very sure", not "refuse the answer").
    Returns the clamped data and one note per value changed, for the log and the reason."""
    if not isinstance(data, dict) or schema.get("type") != "object":
        return data, []
    notes: list[str] = []
    out = dict(data)
    for key, prop in (schema.get("properties") or {}).items():
        value = out.get(key)
        if not isinstance(prop, dict) or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, high = prop.get("minimum"), prop.get("maximum")
        fixed = value
        if isinstance(low, int | float) and fixed < low:
            fixed = low
        if isinstance(high, int | float) and fixed > high:
            fixed = high
        if fixed != value:
            out[key] = fixed
            notes.append(f"{key} {value!r} clamped to {fixed!r}")
    return out, notes
