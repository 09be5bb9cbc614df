"""The run engine: one message in, typed events out, everything persisted.

Plain Python, no HTTP: edges (REST, websocket, admin, your own code) call `run_prepare` to
validate and persist the start of a run, then iterate `execute` for its events. Database work is
grouped into two thread hops per run (start, finish) so the async core never blocks the loop and
never pays a hop per message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.utils import timezone

from agents_app import events as ev
from agents_app.engine.outcome import Execution
from agents_app.engine.pause import (
    PauseRequested,
    PendingCall,
    call_arguments,
    requirement,
    tool_call_dict,
    tool_execution,
    user_input_schema,
    without_images,
)
from agents_app.engine.protocol import PreparedRun, check_message
from agents_app.hooks.errors import HookFailure
from agents_app.memory import context_memories, memory_section, memory_tools, summary_section
from agents_app.models import Agent
from agents_app.providers.base import ModelError, ModelResponse, ToolCallRequest
from agents_app.providers.registry import UnknownProviderError
from agents_app.selectors import agent_get_active
from agents_app.tools.context import RunContext
from agents_app.tools.registry import USER_INPUT, Tool, ToolArgumentsError, tool_registry
from agents_app.versions import materialize_agent, pinned, version_for_run
from sessions_app.conf import agentos_settings
from sessions_app.images import ImageInput, user_content
from sessions_app.models import Run
from sessions_app.services import run_start
from telemetry_app.schemas import EventType

logger = logging.getLogger(__name__)

SCHEMA_INSTRUCTION = "Answer with a single JSON object that matches this JSON schema, and nothing else:\n{schema}"


class ToolLimitExceeded(Exception):
    error_type = "tool_limit_exceeded"


@dataclass(slots=True, kw_only=True)
class RunHandle(PreparedRun):
    """What `run_prepare` persisted and `execute` needs: ids, the agent, the context to send."""

    kind = "agent"
    error_cls = ev.RunError
    content_cls = ev.RunContent
    agent: Agent
    history: list[dict[str, Any]] = field(default_factory=list)
    # The session's state when the run started (the run works on a copy; see RunContext).
    session_state: dict[str, Any] = field(default_factory=dict)
    # The session summary (agents with session_summaries) and the memory lines for the context.
    summary: str = ""
    memories: list[str] = field(default_factory=list)
    # The session has, or after this run will have, runs outside the history window and the summary.
    history_overflow: bool = False

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        return execute(self, stream=stream)

    def result_fields(self, started: dict[str, Any], terminal: dict[str, Any], completed: bool) -> dict[str, Any]:
        return {
            "model": terminal.get("model") or started.get("model", ""),
            "model_provider": terminal.get("model_provider") or started.get("model_provider", ""),
        }


@dataclass(slots=True)
class RunResult:
    """The outcome of a whole run, shaped like agno's RunOutput when serialized."""

    run_id: str
    session_id: str
    agent_id: str
    agent_name: str
    user_id: Any
    status: str
    content: Any
    content_type: str
    model: str
    model_provider: str
    created_at: int
    metrics: dict[str, Any]
    error: str = ""
    error_type: str = ""
    events: list[ev.RunEvent] = field(default_factory=list)
    # A paused run (status "paused"): the calls waiting for a person, agno's shapes, and its expiry.
    tools: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[dict[str, Any]] = field(default_factory=list)
    expires_at: str | None = None
    # The number of the configuration version it ran with (agents_app.versions).
    config_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "run_id": self.run_id,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "content": self.content,
            "content_type": self.content_type,
            "status": self.status,
            "model": self.model,
            "model_provider": self.model_provider,
            "created_at": self.created_at,
            "metrics": self.metrics,
        }
        if self.config_version is not None:
            data["config_version"] = self.config_version
        if self.error_type:
            data["error"] = {"type": self.error_type, "message": self.error}
        if self.status == "paused":
            data.update(tools=self.tools, requirements=self.requirements, expires_at=self.expires_at)
        return data


def run_prepare(
    *,
    agent_id: str,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    images: Sequence[ImageInput] = (),
    version: int | None = None,
) -> RunHandle:
    """Validate the input and persist the user's message and a running Run (sync; one transaction),
    with its `images` (checked by sessions_app.images), which the model gets with the message.
    `version`: run the agent as that configuration version configured it (agents_app.versions;
    UnknownVersion if it has none such), not as it is now.

    Raises AgentNotFound, SessionNotFound, InvalidRunInput or SessionBusy (the session has a run
    going; `Runtime.prepare` applies the agent's busy_session_policy) before anything is written.
    """
    check_message(message)
    agent = agent_get_active(agent_id=agent_id)
    if version is None:
        version_id, version_number = version_for_run("agent", agent)
    else:
        pin = pinned("agent", agent, version)
        agent, version_id, version_number = materialize_agent(pin, agent), pin.pk, pin.number
    history_runs = min(agent.history_runs, int(agentos_settings.MAX_HISTORY_RUNS))
    started = run_start(
        config_version_id=version_id,
        kind="agent",
        component=agent,
        user=user,
        message=message,
        session_id=session_id,
        history_runs=history_runs,
        history_max_chars=agent.history_max_chars,
        history_max_messages=int(agentos_settings.MAX_HISTORY_MESSAGES),
        images=images,
    )
    session = started.session
    return RunHandle(
        agent=agent,
        user_id=user.pk,
        run_id=started.run.pk,
        session_id=session.pk,
        message=message,
        history=started.history,
        created_at=started.run.created_at,
        session_created=started.session_created,
        session_state=session.state if isinstance(session.state, dict) else {},
        summary=session.summary if agent.session_summaries else "",
        memories=context_memories(agent=agent, user_id=user.pk, message=message),
        history_overflow=started.history_overflow,
        images=[image.content_part() for image in images],
        image_files=started.image_files,
        config_version=version_number,
    )


def build_context(
    agent: Agent,
    history: list[dict[str, Any]],
    message: str,
    *,
    memories: list[str] | None = None,
    summary: str = "",
    images: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One system message (instructions, output schema, memories, the session summary), then the
    session's history window, then the new message. Each part has its own bound (docs/memory.md).
    With `images` (OpenAI image parts), the new message is content parts: its text, then them;
    the history stays text."""
    system_parts = [agent.instructions.strip()] if agent.instructions.strip() else []
    if agent.output_schema and agent.parser_model_id is None:
        system_parts.append(SCHEMA_INSTRUCTION.format(schema=json.dumps(agent.output_schema)))
    if memories or agent.memory_mode == "agentic":
        system_parts.append(memory_section(memories or [], agentic=agent.memory_mode == "agentic"))
    if summary:
        system_parts.append(summary_section(summary))
    messages: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(system_parts)}] if system_parts else []
    messages.extend(history)
    messages.append({"role": "user", "content": user_content(message, images)})
    return messages


def _tool_result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=str)
    except (TypeError, ValueError):
        return str(result)


_CANNOT_PAUSE = (
    "Tool {name} needs a person to decide on each call, which this run cannot ask for here "
    "(members that answer at the same time, or a step inside a parallel or condition step); it was not run."
)


def unique_call_ids(calls: list[ToolCallRequest]) -> list[ToolCallRequest]:
    """The calls of one model turn, each with an id of its own. Some providers send the same id (or
    none) for several calls; a person's decision names its call by id, so two calls under one id
    could not be told apart (approving one would approve the other unseen), and the model could not
    tell their results apart either. A repeated id gets a suffix; the assistant message recorded
    and sent back to the model carries the ids given here."""
    seen: set[str] = set()
    unique = []
    for index, call in enumerate(calls):
        call_id = call.id or f"call_{index}"
        if call_id in seen:
            suffix = 2
            while f"{call_id}_{suffix}" in seen:
                suffix += 1
            call_id = f"{call_id}_{suffix}"
        seen.add(call_id)
        unique.append(call if call_id == call.id else ToolCallRequest(call_id, call.name, call.arguments))
    return unique


async def _call_tool(
    call: ToolCallRequest, tools: dict[str, Tool], context: RunContext
) -> tuple[bool, str, dict[str, Any]]:
    """Run one tool call; any failure becomes an error result for the model, never a crash."""
    args: dict[str, Any] = {}
    tool = tools.get(call.name)
    if tool is None:
        return False, f"Unknown tool {call.name!r}. Available: {', '.join(sorted(tools)) or 'none'}.", args
    try:
        parsed = json.loads(call.arguments or "{}")
        if not isinstance(parsed, dict):
            raise ValueError("tool arguments must be a JSON object")
        args = parsed
        validated = tool.validate(parsed)
        if tool.context_param is not None:
            validated[tool.context_param] = context
        timeout = float(agentos_settings.TOOL_TIMEOUT_SECONDS)
        if tool.is_async:
            result = await asyncio.wait_for(tool.fn(**validated), timeout)
        else:
            result = await asyncio.wait_for(sync_to_async(tool.fn, thread_sensitive=False)(**validated), timeout)
    except TimeoutError:
        return False, f"Tool {call.name} timed out after {agentos_settings.TOOL_TIMEOUT_SECONDS} s.", args
    except Exception as exc:  # noqa: BLE001 - a failing tool is reported to the model
        return False, f"{type(exc).__name__}: {exc}", args
    return True, _tool_result_text(result), args


async def _timed_tool(
    call: ToolCallRequest, tools: dict[str, Tool], context: RunContext
) -> tuple[bool, str, dict[str, Any], float, float]:
    """`_call_tool` with when it started and ended (Unix seconds): the tool's span in the trace."""
    started = time.time()
    ok, text, args = await _call_tool(call, tools, context)
    return ok, text, args, started, time.time()


_FAILURES = (ModelError, ToolLimitExceeded, UnknownProviderError, HookFailure)


class _Execution(Execution):
    """The state of one agent run while it executes: the messages so far, the partial answer, the
    token counts; its lifecycle (events, terminal event, storing) is `Execution`'s."""

    kind = "agent"
    telemetry_type = EventType.AGENT
    error_cls = ev.RunError
    cancelled_cls = ev.RunCancelled
    failures = _FAILURES

    def __init__(self, handle: RunHandle, *, stream: bool) -> None:
        super().__init__(handle, stream=stream)
        self.agent = handle.agent
        self.new_messages: list[dict[str, Any]] = []
        self.tools = agent_tools(self.agent)
        if self.agent.memory_mode == "agentic":
            self.tools.update(memory_tools.all())
        # Tool calls so far (bounded by max_tool_calls; a continued run goes on counting), and whether
        # this run may pause for a person (a member run of a collaborating team, or a step inside a
        # parallel or condition step, may not: there a call that needs a person is refused, fail closed).
        self.tool_calls_used = 0
        self.may_pause = True
        # The run's tools see the run's session state (the same dict the hooks change).
        self.context = RunContext(
            run_id=handle.run_id,
            session_id=handle.session_id,
            user_id=handle.user_id,
            agent=self.agent,
            session_state=self.session_state,
        )
        self.setup_output(self.agent)
        self.messages_sent = build_context(
            self.agent,
            handle.history,
            handle.message,
            memories=handle.memories,
            summary=handle.summary,
            images=handle.images,
        )

    def started_event(self) -> ev.RunEvent:
        config = self.agent.model
        return self.event(ev.RunStarted, model=config.model_id, model_provider=config.provider)

    async def body(self) -> AsyncIterator[ev.RunEvent]:
        async for item in self._model_loop():
            yield item
        async for item in self.structure_output(self.agent.model):
            yield item

    def validate_output(self, text: str) -> Any:
        return self.check_output(text) if self.output_format is not None else None

    async def deliver(self) -> AsyncIterator[ev.RunEvent]:
        # A structured answer streamed no deltas (unless a parser model made it: the free answer
        # streamed, the parsed object is in RunCompleted); held output is sent whole now.
        if self.stream and (self.response_format is not None or self.hold_output):
            content_type = "json" if self.response_format is not None else "str"
            yield self.event(ev.RunContent, content=self.content, content_type=content_type)
        self.new_messages.append({"role": "assistant", "content": self.content})

    def completed_event(self) -> tuple[dict[str, Any], ev.RunEvent]:
        outcome = {"status": Run.Status.COMPLETED, "output": self.content, "output_json": self.output_json}
        structured = self.output_format is not None
        return outcome, self.event(
            ev.RunCompleted,
            content=self.output_json if structured else self.content,
            content_type="json" if structured else "str",
            metrics=self.metrics(),
            **self.answered_labels(),
        )

    def messages(self, outcome: dict[str, Any]) -> list[dict[str, Any]]:
        if outcome["status"] == Run.Status.PAUSED:
            return []  # kept in its resume state; stored, all of them, when the run ends
        partial_text = outcome.get("output") if outcome["status"] != Run.Status.COMPLETED else ""
        return (
            [*self.new_messages, {"role": "assistant", "content": partial_text}] if partial_text else self.new_messages
        )

    async def _model_loop(self) -> AsyncIterator[ev.RunEvent]:
        """Call the model, run the tools it asks for, call it again, until it answers; bounded by
        the agent's max_tool_calls. Sets self.content to the final answer."""
        agent = self.agent
        while True:
            calls_used = self.tool_calls_used
            offered = list(self.tools.values()) if calls_used < agent.max_tool_calls else []
            async for item in self.model_call(agent.model, offered):
                yield item
            response = self.response
            if not (response.tool_calls and offered):
                if response.tool_calls and not response.content:
                    raise ToolLimitExceeded(
                        f"The model kept calling tools after the limit of {agent.max_tool_calls} tool calls for this run."
                    )
                self.content = response.content
                return
            calls = response.tool_calls[: agent.max_tool_calls - calls_used]
            self.tool_calls_used = calls_used + len(calls)
            async for item in self._run_tools(response, calls):
                yield item

    async def _run_tools(self, response: ModelResponse, calls: list[ToolCallRequest]) -> AsyncIterator[ev.RunEvent]:
        calls = unique_call_ids(calls)
        # Before the calls are recorded: a run that may not make them keeps no call without its result.
        self.budget.start_tool_calls(len(calls))
        assistant = {
            "role": "assistant",
            "content": response.content or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ],
        }
        self.messages_sent.append(assistant)
        self.new_messages.append(assistant)
        pending, refused, now = self._sort_calls(calls)
        async for item in self.run_calls(now, refused):
            yield item
        if pending:
            # The calls that need nobody ran; the others wait for a person: the run pauses here.
            raise PauseRequested(pending)

    def _sort_calls(
        self, calls: list[ToolCallRequest]
    ) -> tuple[list[PendingCall], list[tuple[ToolCallRequest, str]], list[ToolCallRequest]]:
        """The calls that wait for a person, those refused because this run cannot pause, and those
        to run now (including any whose arguments are invalid: the model hears why, nobody is asked)."""
        pending: list[PendingCall] = []
        refused: list[tuple[ToolCallRequest, str]] = []
        now: list[ToolCallRequest] = []
        for call in calls:
            tool = self.tools.get(call.name)
            args = call_arguments(call.arguments) if tool is not None and tool.requirement is not None else None
            if tool is None or tool.requirement is None or args is None:
                now.append(call)
                continue
            if tool.requirement.kind != USER_INPUT:
                try:
                    tool.validate(args)
                except ToolArgumentsError:
                    now.append(call)
                    continue
            if tool.requirement.kind == USER_INPUT:
                # The user's fields are the user's: a value the model sent anyway (its schema hides
                # them) is dropped, so approving never runs the call with it.
                args = {k: v for k, v in args.items() if k not in tool.requirement.user_input_fields}
            if self.may_pause:
                pending.append(PendingCall(call=call, tool=tool, args=args))
            else:
                refused.append((call, _CANNOT_PAUSE.format(name=call.name)))
        return pending, refused, now

    async def run_calls(
        self, calls: list[ToolCallRequest], refused: list[tuple[ToolCallRequest, str]] | None = None
    ) -> AsyncIterator[ev.RunEvent]:
        """Run tool calls concurrently, with their events and the tool messages for the model;
        `refused` calls (each with why) are answered with an error, never run."""
        refused_calls = [call for call, _ in refused or []]
        began = time.time()
        for call in [*calls, *refused_calls]:
            yield self.event(
                ev.ToolCallStarted,
                tool=tool_call_dict(
                    tool_call_id=call.id, tool_name=call.name, tool_args=_loads_or_raw(call.arguments), started=began
                ),
            )
        results = list(await asyncio.gather(*(_timed_tool(call, self.tools, self.context) for call in calls)))
        for call, text in refused or []:
            results.append((False, text, call_arguments(call.arguments) or {}, began, began))
        for call, (ok, text, args, started, ended) in zip([*calls, *refused_calls], results, strict=True):
            tool_info = tool_call_dict(
                tool_call_id=call.id,
                tool_name=call.name,
                tool_args=args,
                result=text if ok else None,
                error=not ok,
                started=started,
                ended=ended,
            )
            if ok:
                yield self.event(ev.ToolCallCompleted, tool=tool_info, content=text)
            else:
                yield self.event(ev.ToolCallError, tool=tool_info, error=text)
            content = text if ok else f"Error: {text}"
            self.messages_sent.append({"role": "tool", "tool_call_id": call.id, "content": content})
            self.new_messages.append({"role": "tool", "tool_call_id": call.id, "content": content, "name": call.name})

    # ---- pausing (engine/pause.py) -------------------------------------------------------------

    def paused(self, pause: PauseRequested) -> tuple[dict[str, Any], ev.RunEvent]:
        """The run waits for a person: its RunPaused event (agno's shapes), and what its store
        writes besides its outcome (`pause_record`: the tool approvals, what continuing it needs)."""
        now = timezone.now()
        expires = now + timedelta(seconds=int(self.agent.approval_timeout_seconds))
        tools = []
        for p in pause.pending:
            schema = user_input_schema(p.tool, p.args, p.user_input_fields) if p.kind == USER_INPUT else None
            tools.append(
                tool_execution(
                    tool_call_id=p.call.id,
                    tool_name=p.call.name,
                    tool_args=p.args,
                    kind=p.kind,
                    schema=schema,
                    created_at=int(now.timestamp()),
                    approval_id=str(p.approval_id),
                )
            )
        # Positions after an earlier pause's approvals (a continued run may pause again).
        first = int(self.prior.get("approvals_made") or 0)
        state = self.resume_state()
        state["approvals_made"] = first + len(pause.pending)
        self.pause_record = {
            "expires_at": expires,
            "resume_state": state,
            "approvals": [
                {
                    "id": p.approval_id,
                    "position": first + index,
                    "tool_call_id": p.call.id,
                    "tool_name": p.call.name,
                    "requirement": p.kind,
                    "tool_args": p.args,
                    "user_input_fields": p.user_input_fields,
                }
                for index, p in enumerate(pause.pending)
            ],
        }
        outcome = {"status": Run.Status.PAUSED, "output": self.partial_output(), "error": "", "error_type": ""}
        terminal = self.event(
            ev.RunPaused,
            tools=tools,
            requirements=[requirement(t, created_at=now) for t in tools],
            expires_at=expires.isoformat(),
            metrics=self.metrics(),
        )
        return outcome, terminal

    def resume_state(self) -> dict[str, Any]:
        """What a continue needs, in any process: the messages so far (the images sent with the
        message as references to the run's stored images, not a second copy), the tool calls used,
        and what the run has counted (its row keeps the totals; a continuation adds its own)."""
        return {
            **self.resume_counts(),
            "messages_sent": without_images(self.messages_sent),
            "new_messages": self.new_messages,
            "tool_calls_used": self.tool_calls_used,
        }


async def execute(handle: RunHandle, *, stream: bool = False) -> AsyncIterator[ev.RunEvent]:
    """Run the model loop for a prepared run, yielding its events. The last event is always one of
    RunCompleted, RunError or RunCancelled, and the run is persisted before it is yielded.

    Cancelling the task that iterates this (task.cancel()) stops the model call or the tools
    promptly, stores the run as cancelled with what was produced so far, and yields RunCancelled.
    """
    async for item in _Execution(handle, stream=stream).run():
        yield item


def agent_tools(agent: Agent) -> dict[str, Tool]:
    """The agent's registered tools by name, each with the requirement that applies to this agent:
    its override (AgentToolRequirement, prefetched with the agent) or the tool's own."""
    overrides = {row.tool: row for row in agent.tool_requirement_rows()} if agent.pk is not None else {}
    tools: dict[str, Tool] = {}
    for name in agent.tools:
        item = tool_registry.get(name)
        if item is None:
            continue
        row = overrides.get(name)
        tools[name] = item.with_requirement(row.as_requirement()) if row is not None else item
    return tools


def _loads_or_raw(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


def result_from_events(handle: RunHandle, events: list[ev.RunEvent]) -> RunResult:
    """An agent's run as a RunResult (what `agents_app.runs.run_agent` returns), from its result."""
    data = handle.result(events)
    error = data.pop("error", {"type": "", "message": ""})
    return RunResult(**data, error=error["message"], error_type=error["type"], events=events)
