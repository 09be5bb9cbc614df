"""The telemetry wire format (pydantic, versioned). A sender builds these, the buffer stores their
JSON, and the collector validates whole batches against the same classes.

Version 1:
- `RunCreatedEvent` (`kind="run_created"`): one finished agent/team/workflow run or eval: ids,
  model, status, token counts and timings. No message contents unless the sender's
  TELEMETRY_INCLUDE_CONTENT allows them (`content`).
- `LaunchEvent` (`kind="launch"`): a site process started serving: site id, version, the agents,
  teams and workflows it serves.
- `Batch`: what one upload request carries; every event has an `event_id`, its idempotency key.

A change that an older collector would reject gets a new `schema_version`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

ShortStr = Annotated[str, Field(max_length=200)]
Seconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]
Tokens = Annotated[int, Field(ge=0, le=10**12)]


class EventType(StrEnum):
    """What kind of run an event describes."""

    AGENT = "agent"
    TEAM = "team"
    WORKFLOW = "workflow"
    EVAL = "eval"


class EventKind(StrEnum):
    RUN_CREATED = "run_created"
    LAUNCH = "launch"


class RunStatus(StrEnum):
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    RUNNING = "running"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID
    created_at: datetime


class RunContent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Annotated[str, Field(max_length=100_000)] = ""
    output: Annotated[str, Field(max_length=100_000)] = ""


class RunCreatedEvent(_Event):
    kind: Literal[EventKind.RUN_CREATED] = EventKind.RUN_CREATED
    event_type: EventType
    run_id: ShortStr
    session_id: ShortStr | None = None
    component_id: ShortStr = Field(description="The agent, team or workflow id (or the eval's name).")
    model: ShortStr = ""
    provider: ShortStr = ""
    status: RunStatus
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    total_tokens: Tokens = 0
    time_to_first_token: Seconds | None = None
    duration: Seconds | None = None
    error_type: Annotated[str, Field(max_length=64)] = ""
    content: RunContent | None = None


class LaunchEvent(_Event):
    kind: Literal[EventKind.LAUNCH] = EventKind.LAUNCH
    site_id: Annotated[str, Field(max_length=64)]
    version: Annotated[str, Field(max_length=32)]
    agents: Annotated[list[ShortStr], Field(max_length=10_000)] = []
    teams: Annotated[list[ShortStr], Field(max_length=10_000)] = []
    workflows: Annotated[list[ShortStr], Field(max_length=10_000)] = []


Event = Annotated[RunCreatedEvent | LaunchEvent, Field(discriminator="kind")]


class Batch(BaseModel):
    """One upload: the sender's site id and up to the collector's limit of events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    site_id: Annotated[str, Field(min_length=1, max_length=64)]
    sent_at: datetime
    events: Annotated[list[Event], Field(min_length=1)]
