"""The telemetry wire format (pydantic, versioned). A sender builds these, the buffer stores their
JSON, and the collector validates whole batches against the same classes.

Version 1:
- `RunCreatedEvent` (`kind="run_created"`): one finished agent/team/workflow run or eval: ids,
  model, status, token counts and timings. No message contents unless the sender's
  TELEMETRY_INCLUDE_CONTENT allows them (`content`).
- `LaunchEvent` (`kind="launch"`): a site process started serving: site id, version, the agents,
  teams and workflows it serves.
- `Batch`: what one upload request carries; every event has an `event_id`, its idempotency key.

Version 2 (run events only): version 1 plus `cost` (the run's own model calls, in the model
configs' currency) and `cache_read_tokens`. A sender writes a version 2 event only for a run that
has either (a run with neither is the version 1 event it always was), and downgrades version 2
events to version 1 at upload when TELEMETRY_MAX_SCHEMA_VERSION says its collector is older
(`as_version`). A collector of this version accepts both; a version 1 event may not carry the
version 2 fields, and one is stored as it was sent (without them).

Version 3 (run events only): version 2 plus `config_version`, the number of the configuration
version of the agent, team or workflow the run ran with (agents_app.versions). A sender writes a
version 3 event for every run that has one; an older collector (TELEMETRY_MAX_SCHEMA_VERSION 2 or
1) gets it without the fields it does not know.

A change that an older collector would reject gets a new `schema_version`: the events that
change get it, the batch envelope and the other events keep theirs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

SCHEMA_VERSION = 1  # the batch envelope's and the launch event's
RUN_SCHEMA_VERSION = 3  # the latest run event version
# Run event fields by the version that added them (what a downgrade leaves out).
RUN_V2_FIELDS = ("cost", "cache_read_tokens")
RUN_V3_FIELDS = ("config_version",)
RUN_FIELDS_BY_VERSION = {2: RUN_V2_FIELDS, 3: RUN_V3_FIELDS}


def _newer_fields(version: int) -> tuple[str, ...]:
    """The run event fields a version `version` event may not carry."""
    return tuple(name for v, names in RUN_FIELDS_BY_VERSION.items() if v > version for name in names)


ShortStr = Annotated[str, Field(max_length=200)]
Seconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]
Tokens = Annotated[int, Field(ge=0, le=10**12)]
# Money as JSON carries it (a float rounded to the stored 10 decimal places; agents_app.pricing).
Cost = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]


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
    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION  # type: ignore[assignment]
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
    # Version 2:
    cost: Cost | None = Field(
        default=None,
        description="(Version 2) What the run's own model calls cost (its member or step runs have their own "
        "events), in the currency of the model configs' prices.",
    )
    cache_read_tokens: Tokens = Field(
        default=0, description="(Version 2) Of the input tokens, those the provider read from its prompt cache."
    )
    # Version 3:
    config_version: Annotated[int, Field(ge=1, le=10**9)] | None = Field(
        default=None,
        description="(Version 3) The number of the configuration version of the agent, team or workflow the run "
        "ran with.",
    )

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> RunCreatedEvent:
        newer = sorted(set(_newer_fields(self.schema_version)) & self.model_fields_set)
        if newer:
            need = max(v for v, names in RUN_FIELDS_BY_VERSION.items() if set(names) & set(newer))
            raise ValueError(f"{', '.join(newer)}: only in schema_version {need} run events")
        return self

    @model_serializer(mode="wrap")
    def _dump_its_version(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An event dumps as its version (what an older collector accepts)."""
        data = handler(self)
        for name in _newer_fields(self.schema_version):
            data.pop(name, None)
        return data


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


def as_version(payload: dict[str, Any], version: int) -> dict[str, Any]:
    """An event's JSON (as buffered) for a collector that accepts run events up to `version`: a
    newer run event loses the fields of the versions after `version` (a version 3 event sent to a
    version 1 collector loses its version 2 and 3 fields)."""
    if payload.get("kind") != EventKind.RUN_CREATED or payload.get("schema_version", 1) <= version:
        return payload
    newer = set(_newer_fields(version))
    return {**{k: v for k, v in payload.items() if k not in newer}, "schema_version": version}
