"""Pausing a run for a person (docs/human-in-the-loop.md): what the agent engine raises when the
model calls tools that need someone to approve, fill in or run them, and the shapes a paused run
shows its clients, agno's (`ToolExecution`, `RunRequirement`), so agno's client and Agent UI read
them as they read agno's own.

The engine runs the calls that need nobody, then raises `PauseRequested` with the others; the
shared lifecycle (engine/outcome.Execution) ends the run there, stored `paused` with what a later
continue needs (engine/approvals.py continues it, in any process).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from agents_app.providers.base import ToolCallRequest
from agents_app.tools.registry import CONFIRMATION, EXTERNAL_EXECUTION, USER_INPUT, Tool

# The JSON Schema types of a tool's arguments as agno names a user-input field's type.
_FIELD_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


@dataclass(slots=True)
class PendingCall:
    """One tool call that waits for a person: the model's call, its tool (with the requirement
    that applies to this agent) and the arguments the model chose."""

    call: ToolCallRequest
    tool: Tool
    args: dict[str, Any]
    approval_id: UUID = field(default_factory=uuid4)

    @property
    def kind(self) -> str:
        assert self.tool.requirement is not None
        return self.tool.requirement.kind

    @property
    def user_input_fields(self) -> list[str]:
        assert self.tool.requirement is not None
        return list(self.tool.requirement.user_input_fields)


class PauseRequested(Exception):
    """Raised by the agent engine after it ran the tool calls that need nobody: the others wait."""

    def __init__(self, pending: list[PendingCall]) -> None:
        super().__init__(f"{len(pending)} tool call(s) wait for a person")
        self.pending = pending


class ChildPaused(PauseRequested):
    """Raised by a member's or step's child run (engine/team.ChildRun) whose run paused: its parent
    pauses too, listing the child's waiting calls (`tools`, `requirements`, as the child's pause
    event has them) and expiring when the child does. The waiting calls are the child's (its
    ToolApproval rows); continuing the parent resumes the child (engine/approvals.py)."""

    def __init__(
        self, *, child_run_id: Any, tools: list[dict[str, Any]], requirements: list[dict[str, Any]], expires_at: str
    ) -> None:
        super().__init__([])
        self.child_run_id = child_run_id
        self.tools = tools
        self.requirements = requirements
        self.expires_at = expires_at


def user_input_schema(tool: Tool, args: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
    """agno's `user_input_schema`: every argument of the tool (name, type, description), the
    model's value where it chose one; the fields the user must fill have none yet."""
    properties = (tool.all_parameters or tool.parameters).get("properties", {})
    schema = []
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        schema.append(
            {
                "name": name,
                "field_type": _FIELD_TYPES.get(kind, "str") if isinstance(kind, str) else "str",
                "description": spec.get("description") if isinstance(spec, dict) else None,
                "value": None if name in fields else args.get(name),
            }
        )
    return schema


def tool_execution(
    *,
    tool_call_id: str,
    tool_name: str,
    tool_args: dict[str, Any],
    kind: str,
    schema: list[dict[str, Any]] | None,
    created_at: int,
    approval_id: str,
    confirmed: bool | None = None,
    note: str | None = None,
    result: str | None = None,
) -> dict[str, Any]:
    """A call awaiting (or past) a decision, as agno's ToolExecution.to_dict() shapes it."""
    return {
        "tool_call_id": tool_call_id,
        "tool_name": tool_name,
        "tool_args": tool_args,
        "tool_call_error": None,
        "result": result,
        "metrics": None,
        "child_run_id": None,
        "stop_after_tool_call": False,
        "created_at": created_at,
        "requires_confirmation": True if kind == CONFIRMATION else None,
        "confirmed": confirmed,
        "confirmation_note": note,
        "requires_user_input": True if kind == USER_INPUT else None,
        "user_input_schema": schema if kind == USER_INPUT else None,
        "user_feedback_schema": None,
        "answered": True if kind == USER_INPUT and confirmed else None,
        "external_execution_required": True if kind == EXTERNAL_EXECUTION else None,
        "external_execution_silent": None,
        "approval_type": None,
        "approval_id": approval_id,
        "parent_tool_call_id": None,
    }


def tool_call_dict(
    *,
    tool_call_id: str,
    tool_name: str,
    tool_args: Any,
    result: str | None = None,
    error: bool | None = None,
    started: float | None = None,
    ended: float | None = None,
    child_run_id: str | None = None,
) -> dict[str, Any]:
    """A tool call as agno's ToolExecution.to_dict() shapes it (every key), with its timing in
    `metrics` (`start_time`, `end_time`: Unix seconds; `duration`: seconds) once it ran."""
    data = tool_execution(
        tool_call_id=tool_call_id,
        tool_name=tool_name,
        tool_args=tool_args,
        kind="",
        schema=None,
        created_at=int(started or time.time()),
        approval_id=None,  # type: ignore[arg-type]
        result=result,
    )
    data["tool_call_error"] = error
    data["child_run_id"] = child_run_id
    if started is not None and ended is not None:
        data["metrics"] = {"start_time": started, "end_time": ended, "duration": max(ended - started, 0.0)}
    return data


def requirement(execution: dict[str, Any], *, created_at: datetime) -> dict[str, Any]:
    """agno's RunRequirement.to_dict() for one paused call (its id is the ToolApproval's)."""
    data: dict[str, Any] = {
        "id": execution["approval_id"],
        "created_at": created_at.isoformat(),
        "tool_execution": execution,
    }
    if execution.get("user_input_schema") is not None:
        data["user_input_schema"] = execution["user_input_schema"]
    return data


def call_arguments(arguments: str) -> dict[str, Any] | None:
    """The model's arguments as an object, or None when they are not a JSON object."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


# The images sent with a run's message are stored once, as the run's images (sessions_app.images,
# RunImage rows): a paused run's resume state refers to them by position instead of copying them.
IMAGE_REF = "run_image"


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each image part of a user message replaced by a reference to the run's
    stored image at that position (its `detail` kept)."""
    out = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            parts, position = [], 0
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    parts.append({"type": IMAGE_REF, "position": position})
                    position += 1
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out


def has_image_refs(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == IMAGE_REF for p in m["content"])
        for m in messages
    )


def with_images(messages: list[dict[str, Any]], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The references of `without_images` replaced by the run's image parts again (as the model
    got them: an uploaded image as a `data:` URL); a reference to an image no longer stored is
    dropped."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            restored = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == IMAGE_REF:
                    position = part.get("position")
                    if isinstance(position, int) and 0 <= position < len(parts):
                        restored.append(parts[position])
                else:
                    restored.append(part)
            message = {**message, "content": restored}
        out.append(message)
    return out
