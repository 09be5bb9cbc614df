"""The input of a continue (docs/human-in-the-loop.md): a decision per pending tool call, the same
on REST, the websocket and the Python API (agno's routes take agno's own shape:
engine/approvals.decisions_from_agno_tools)."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework import serializers

from agents_app.engine.approvals import Decision
from sessions_app.inputs import InvalidInput, clean_json, clean_text

MAX_DECISIONS = 256


class DecisionSerializer(serializers.Serializer):
    """A decision on one pending tool call."""

    tool_call_id = serializers.CharField(max_length=200, help_text="The call's `tool_call_id` (from RunPaused).")
    decision = serializers.ChoiceField(
        choices=["approve", "reject"],
        help_text="approve: the call runs (or, executed by the client, its `result` goes to the model); reject: it "
        "does not run, and the model is told, with your `note`.",
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=10_000, trim_whitespace=False, default="", help_text="Why."
    )
    arguments = serializers.DictField(
        required=False,
        help_text="For approve: argument values that replace the model's (the user-input fields of a user-input "
        "call must be given, here or by the model).",
    )
    result = serializers.JSONField(
        required=False, help_text="For approve of an externally executed call: its result (text, or any JSON)."
    )

    def validate_note(self, value: str) -> str:
        try:
            return clean_text(value)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None

    def validate_arguments(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return clean_json(value, field="arguments")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None

    def validate_result(self, value: Any) -> Any:
        try:
            return clean_json(value, field="result")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None


class RunContinueInputSerializer(serializers.Serializer):
    decisions = DecisionSerializer(
        many=True, max_length=MAX_DECISIONS, help_text="One decision per pending tool call (all of them)."
    )
    stream = serializers.BooleanField(
        default=False, help_text="Answer as Server-Sent Events (the continuation's events) instead of one JSON object."
    )


def decisions_from(rows: list[dict[str, Any]]) -> list[Decision]:
    return [
        Decision(
            tool_call_id=row["tool_call_id"],
            approve=row["decision"] == "approve",
            note=row.get("note") or "",
            arguments=row.get("arguments"),
            result=None
            if row.get("result") is None
            else row["result"]
            if isinstance(row["result"], str)
            else orjson.dumps(row["result"]).decode(),
        )
        for row in rows
    ]
