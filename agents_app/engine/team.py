"""The team engine: a leader model and its members (agents or other teams), in one of three modes.

* route: the leader picks one member (a `route_to_member` tool call); that member answers the
  user's message and its answer is the team's.
* coordinate: the leader delegates sub-tasks (`delegate_task_to_member`, agno's tool name) as often
  as it needs, within `max_member_calls`, reads the answers and writes the team's answer.
* collaborate: every member answers the message at the same time; the leader combines the answers.

Each member run is a child run (agents_app.engine.children): stored on its own, its events
forwarded in the team's stream with `parent_run_id`. A member that fails ends the team run with
`member_error`; the member runs that finished are kept, and so is the partial output. Plain async
Python, like the agent engine: no HTTP here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from agents_app import events as ev
from agents_app.engine.children import ChildCancelled, ChildFailed, DelegationDepthExceeded, content_text, merge
from agents_app.engine.outcome import Execution
from agents_app.engine.pause import ChildPaused, tool_call_dict, without_images
from agents_app.engine.protocol import PreparedRun, Resume, check_message
from agents_app.engine.resume import _ContinuedExecution, continued_agent_handle, decided_calls
from agents_app.engine.runner import _FAILURES as _MODEL_FAILURES
from agents_app.engine.runner import SCHEMA_INSTRUCTION, RunHandle, _Execution
from agents_app.memory import context_memories
from agents_app.models import Team, TeamMember
from agents_app.providers.base import ToolCallRequest
from agents_app.selectors import team_get_active, team_members_tree
from agents_app.tools.registry import Tool
from agents_app.versions import materialize_team, pinned, version_for_run
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.images import ImageInput, user_content
from sessions_app.models import Run
from sessions_app.services import child_run_start, run_cancel, run_start
from telemetry_app.schemas import EventType

logger = logging.getLogger(__name__)


class MemberLimitExceeded(Exception):
    error_type = "member_limit_exceeded"


class RoutingError(Exception):
    error_type = "routing_error"


_FAILURES = (*_MODEL_FAILURES, ChildFailed, DelegationDepthExceeded, MemberLimitExceeded, RoutingError)


@dataclass(slots=True, kw_only=True)
class TeamRunHandle(PreparedRun):
    """What `team_run_prepare` persisted and the team engine needs."""

    kind = "team"
    error_cls = ev.TeamRunError
    content_cls = ev.TeamRunContent
    team: Team
    members_of: dict[int, list[TeamMember]]
    history: list[dict[str, Any]] = field(default_factory=list)
    depth: int = 0
    max_depth: int = 1
    # The session's state when the run started: each member run starts from it (as an agent run does).
    session_state: dict[str, Any] = field(default_factory=dict)

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        return TeamExecution(self, stream=stream).run()

    def result_fields(self, started: dict[str, Any], terminal: dict[str, Any], completed: bool) -> dict[str, Any]:
        """agno's TeamRunOutput names: the mode, the leader's model, and the member runs."""
        return {
            "mode": self.team.mode,
            # The model that answered (a fallback, when the main one failed), else the one it started with.
            "model": terminal.get("model") or started.get("model", ""),
            "model_provider": terminal.get("model_provider") or started.get("model_provider", ""),
            "member_runs": terminal.get("member_runs") or [],
        }


# ---- child runs ------------------------------------------------------------------------------


class ChildRun:
    """One member or step run: iterate `events()` for the child's own events (as dicts); afterwards
    `status`, `content`, `error` and `summary()` tell how it ended."""

    def __init__(
        self,
        *,
        parent_run_id: UUID,
        session_id: UUID,
        user_id: Any,
        message: str,
        stream: bool,
        agent: Any = None,
        team: Any = None,
        members_of: dict[int, list[Any]] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        label: dict[str, Any] | None = None,
        session_state: dict[str, Any] | None = None,
        parent: Execution | None = None,
        may_pause: bool = True,
        resume: Resume | None = None,
    ) -> None:
        self.parent_run_id = parent_run_id
        self.session_id = session_id
        self.user_id = user_id
        self.message = message
        self.stream = stream
        self.agent = agent
        self.team = team
        self.members_of = members_of or {}
        self.depth = depth
        self.max_depth = max_depth
        self.label = label or {}
        # What an agent child starts from (its tools see it through RunContext); it stores the keys it
        # changes with the session when it ends, and `state_set`/`state_unset` tell its parent.
        self.session_state = session_state if session_state is not None else {}
        self.state_set: dict[str, Any] = {}
        self.state_unset: list[str] = []
        self.run_id: UUID | None = None
        self.config_version: int | None = None
        self.status = ""
        self.content: Any = None
        self.error = ""
        self.error_type = ""
        self.metrics: dict[str, Any] = {}
        # The run that started this one: it adds what this run cost (with its own children) to its total.
        self.parent = parent
        # Whether a tool call that needs a person pauses this run (and its parent with it), or is
        # refused (members answering at the same time, steps inside parallel or condition steps).
        self.may_pause = may_pause
        # A paused child run its parent's continue resumes (engine/approvals.py), instead of a new one.
        self.resume = resume

    @property
    def component_type(self) -> str:
        return "team" if self.team is not None else "agent"

    @property
    def component_id(self) -> str:
        return (self.team or self.agent).slug

    @property
    def component_name(self) -> str:
        return (self.team or self.agent).name

    def summary(self) -> dict[str, Any]:
        data = {
            "run_id": str(self.run_id) if self.run_id else None,
            "member_type": self.component_type,
            "member_id": self.component_id,
            "status": self.status,
            "content": self.content,
        }
        if self.error_type:
            data["error"] = {"type": self.error_type, "message": self.error}
        return {**self.label, **data}

    def _start_sync(self) -> tuple[Run, list[str]]:
        """One thread hop: the child's row (with the version of the member's own configuration it
        runs with), and (an agent child) the user's memories for its context, as an agent run reads
        them when it starts."""
        if self.team is not None:
            version_id, self.config_version = version_for_run("team", self.team, members=self.members_of)
        else:
            version_id, self.config_version = version_for_run("agent", self.agent)
        run = child_run_start(
            config_version_id=version_id,
            parent_run_id=self.parent_run_id,
            session_id=self.session_id,
            user_id=self.user_id,
            message=self.message,
            agent=self.agent,
            team=self.team,
        )
        memories = (
            context_memories(agent=self.agent, user_id=self.user_id, message=self.message)
            if self.agent is not None
            else []
        )
        return run, memories

    async def _start(self) -> tuple[Run, list[str]]:
        """Write the child's row. Its thread hop cannot be stopped halfway: if the parent is cancelled
        meanwhile, the row is still written, so store it as cancelled rather than leave it running."""
        start = asyncio.ensure_future(db_call(self._start_sync))
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                run, _ = await start
                reason = "The run was cancelled before it started."
                await db_call(run_cancel, run_id=run.pk, reason=reason, user_message=self.message, events=[])
            raise

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self.team is not None and self.depth >= self.max_depth:
            raise DelegationDepthExceeded(
                f"Team {self.team.slug!r} would run {self.depth} levels deep; the limit is {self.max_depth}."
            )
        resume = self.resume
        if resume is not None:  # claimed with its parent: it goes on, as the same run
            run_id, created_at, memories = resume.run_id, resume.created_at, []
            self.message = resume.message
        else:
            run, memories = await self._start()
            run_id, created_at = run.pk, run.created_at
        self.run_id = run_id
        # The child's own copy of the session state: its hooks and tools change it, and it stores (and
        # tells its parent, `state_set`/`state_unset`) the keys it changed.
        common = {
            "user_id": self.user_id,
            "run_id": run_id,
            "session_id": self.session_id,
            "message": self.message,
            "created_at": created_at,
            "session_state": copy.deepcopy(self.session_state),
            "config_version": self.config_version,
        }
        execution: Execution
        if self.team is not None:
            handle = TeamRunHandle(
                team=self.team,
                members_of=self.members_of,
                depth=self.depth,
                max_depth=self.max_depth,
                resume=resume,
                prior_events=resume.prior_events if resume is not None else [],
                **common,
            )
            team_execution = TeamExecution(handle, stream=self.stream)
            team_execution.may_pause = self.may_pause
            execution = team_execution
        else:
            agent_execution = (
                _ContinuedExecution(
                    continued_agent_handle(
                        agent=self.agent,
                        user_id=self.user_id,
                        session_id=self.session_id,
                        session_state=common["session_state"],
                        resume=resume,
                    ),
                    stream=self.stream,
                )
                if resume is not None
                else _Execution(RunHandle(agent=self.agent, memories=memories, **common), stream=self.stream)
            )
            agent_execution.may_pause = self.may_pause
            execution = agent_execution
        execution.top_level = False  # its trace is its parent's (exported with it)
        if self.parent is not None:  # its work counts against its parent's budget too
            execution.budget.parent = self.parent.budget
        last: dict[str, Any] = {}
        try:
            async for item in execution.run():
                last = item.to_dict()
                yield last
        finally:
            self.state_set, self.state_unset = execution.state_changes()
            if self.parent is not None:
                self.parent.children_cost += execution.cost + execution.children_cost
                self.parent.children_tokens += (
                    execution.input_tokens + execution.output_tokens + execution.children_tokens
                )
        name = last.get("event", "")
        self.status = ev.STATUS_OF_TERMINAL.get(name, "error")
        if self.status == "completed":
            self.content = last.get("content")
            self.metrics = last.get("metrics") or {}
            return
        if self.status == "paused":
            # It waits for a person (stored paused, with its calls): its parent waits with it. Each
            # requirement names the member run that waits (the deepest one, for a member team).
            label = {
                "member_run_id": str(self.run_id),
                "member_agent_id": self.component_id,
                "member_agent_name": self.component_name,
            }
            raise ChildPaused(
                child_run_id=self.run_id,
                tools=last.get("tools") or [],
                requirements=[{**label, **r} for r in last.get("requirements") or []],
                expires_at=last.get("expires_at") or "",
            )
        self.error = last.get("content") or last.get("reason") or "The run ended without an answer."
        self.error_type = last.get("error_type") or ("cancelled" if self.status == "cancelled" else "error")
        if self.status == "cancelled":
            raise ChildCancelled(self.error)
        raise ChildFailed(
            f"{self.component_type.capitalize()} {self.component_id!r} failed ({self.error_type}): {self.error}",
            child_error_type=self.error_type,
        )


def team_run_prepare(
    *,
    team_id: str,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    images: Sequence[ImageInput] = (),
    version: int | None = None,
) -> TeamRunHandle:
    """Validate, then persist the user's message and a running team Run (sync; one transaction),
    with its `images`, which the leader gets with the message (members get text: their tasks).
    Raises TeamNotFound, SessionNotFound, InvalidRunInput or SessionBusy before anything is written."""
    check_message(message)
    team = team_get_active(team_id=team_id)
    if version is None:
        tree = team_members_tree(team)
        version_id, version_number = version_for_run("team", team, members=tree)
    else:  # as that version configured it (agents_app.versions); its members as they are now
        pin = pinned("team", team, version)
        (team, tree), version_id, version_number = materialize_team(pin, team), pin.pk, pin.number
    history_runs = min(team.history_runs, int(agentos_settings.MAX_HISTORY_RUNS))
    started = run_start(
        config_version_id=version_id,
        kind="team",
        component=team,
        user=user,
        message=message,
        session_id=session_id,
        history_runs=history_runs,
        images=images,
    )
    return TeamRunHandle(
        team=team,
        members_of=tree,
        user_id=user.pk,
        run_id=started.run.pk,
        session_id=started.session.pk,
        message=message,
        history=started.history,
        created_at=started.run.created_at,
        session_created=started.session_created,
        max_depth=team.max_depth,
        session_state=started.session.state if isinstance(started.session.state, dict) else {},
        images=[image.content_part() for image in images],
        image_files=started.image_files,
        config_version=version_number,
    )


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Tool:
    """A tool offered to the leader; the team engine runs its calls itself (they start member runs)."""
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return Tool(
        name=name, description=description, parameters=parameters, fn=lambda **_: None, is_async=False, _validator=None
    )


_MODE_GUIDANCE = {
    Team.Mode.ROUTE: (
        "You lead a team. Do not answer yourself: pick the one member best placed to answer the user's "
        "message and call route_to_member with its id. Its answer goes to the user as it is."
    ),
    Team.Mode.COORDINATE: (
        "You lead a team. Break the user's request into tasks, give each to the right member with "
        "delegate_task_to_member (a clear, self-contained task), read their answers, then write the final "
        "answer yourself."
    ),
    Team.Mode.COLLABORATE: (
        "You lead a team. Every member has answered the user's message; combine their answers into one "
        "answer: keep what is right, settle disagreements, leave nothing important out."
    ),
}


class TeamExecution(Execution):
    """One team run while it executes; its lifecycle (events, terminal event, storing) is `Execution`'s."""

    kind = "team"
    event_prefix = "Team"
    telemetry_type = EventType.TEAM
    error_cls = ev.TeamRunError
    content_cls = ev.TeamRunContent
    cancelled_cls = ev.TeamRunCancelled
    paused_cls = ev.TeamRunPaused
    failures = _FAILURES

    def __init__(self, handle: TeamRunHandle, *, stream: bool) -> None:
        super().__init__(handle, stream=stream)
        self.h = handle
        self.team = handle.team
        self.children: list[ChildRun] = []
        # Delegation calls so far, valid or not: a leader that keeps naming unknown members must
        # not loop forever either.
        self.delegations = 0
        self.members = {m.member_id: m for m in handle.members_of.get(self.team.pk, [])}
        self.setup_output(self.team)
        self.messages_sent = self._context()
        # Whether a member's call that needs a person pauses this team (see ChildRun.may_pause), and
        # where it was when it paused (`resume_point`): the delegation whose member run waits.
        self.may_pause = True
        self.pause_point: dict[str, Any] | None = None
        # A continued team: the member runs that ended before its pause, and the leader's messages.
        self.earlier_member_runs: list[dict[str, Any]] = []
        if self.resume is not None:
            state = self.prior
            self.messages_sent = list(state.get("messages_sent") or self.messages_sent)
            self.delegations = int(state.get("delegations") or 0)
            self.earlier_member_runs = list(state.get("member_runs") or [])

    def member_runs(self) -> list[dict[str, Any]]:
        runs = [*self.earlier_member_runs, *(child.summary() for child in self.children if child.run_id is not None)]
        # A rejected answer is not shown, and the members' answers made it.
        return [{**run, "content": None} for run in runs] if self.discarded else runs

    def member_event(self, data: dict[str, Any], child: ChildRun) -> ev.RunEvent | None:
        """A member's own event in the team's stream, named as agno names it (`agent_name` or
        `team_name`). While inline post-hooks may still rewrite or reject the team's answer, which
        the members' answers make, their words stay out of the stream: no deltas, no content."""
        if self.hold_output:
            if data.get("event") in ("RunContent", "TeamRunContent"):
                return None
            if data.get("content") is not None:
                data = {**data, "content": None}
        name_key = "team_name" if child.team is not None else "agent_name"
        return self.forward(data, **{name_key: child.component_name})

    def shown(self, text: str) -> str:
        """A member's answer as a delegation event shows it (nothing while hooks hold the answer)."""
        return "" if self.hold_output else text

    # ---- the lifecycle ---------------------------------------------------------------------

    def started_event(self) -> ev.RunEvent:
        if self.resume is not None:
            return self.event(ev.TeamRunContinued, tools=decided_calls(self.resume))
        config = self.team.model
        return self.event(ev.TeamRunStarted, model=config.model_id, model_provider=config.provider, mode=self.team.mode)

    async def body(self) -> AsyncIterator[ev.RunEvent]:
        if self.resume is not None:
            source = self._resumed()
        else:
            source = {
                Team.Mode.ROUTE: self._route,
                Team.Mode.COORDINATE: self._coordinate,
                Team.Mode.COLLABORATE: self._collaborate,
            }.get(self.team.mode, self._coordinate)()
        async for item in source:
            yield item
        async for item in self.structure_output(self.team.model):
            yield item

    # ---- pausing with a member, and going on (engine/approvals.py) ---------------------------

    def resume_point(self, pause: ChildPaused) -> dict[str, Any]:
        paused = str(pause.child_run_id)
        return {
            "messages_sent": without_images(self.messages_sent),
            "delegations": self.delegations,
            "member_runs": [r for r in self.member_runs() if r.get("run_id") != paused],
            "point": self.pause_point,
        }

    def paused_fields(self, pause: ChildPaused) -> dict[str, Any]:
        return {"member_runs": self.member_runs()}

    async def _resumed(self) -> AsyncIterator[ev.RunEvent]:
        """Go on where the team paused: resume the member run that waited (its decisions applied,
        its events forwarded), finish that delegation, the calls the leader made with it, then the
        leader as usual."""
        assert self.resume is not None and self.resume.child is not None
        point = self.prior.get("point") or {}
        member = self.members.get(str(point.get("member_id", "")))
        if member is None:
            raise RoutingError(f"Member {point.get('member_id')!r} is no longer in the team.")
        raw = point.get("call") or {}
        call = ToolCallRequest(str(raw.get("id", "")), str(raw.get("name", "")), str(raw.get("arguments", "")))
        args = point.get("args") or {}
        child = self._child(member, str(point.get("task") or self.h.message), resume=self.resume.child)
        async for data in child.events():
            if (item := self.member_event(data, child)) is not None:
                yield item
        answer = content_text(child.content)
        info = self._tool_info(call, args, result=self.shown(answer), tool_call_error=False)
        yield self.event(ev.TeamToolCallCompleted, tool=info, content=self.shown(answer))
        if point.get("mode") == Team.Mode.ROUTE:
            self.content = answer
            return
        self.messages_sent.append({"role": "tool", "tool_call_id": call.id, "content": answer})
        remaining = [
            ToolCallRequest(str(c["id"]), str(c["name"]), str(c["arguments"])) for c in point.get("remaining") or []
        ]
        async for item in self._delegate(remaining):
            yield item
        async for item in self._coordinate():
            yield item

    def validate_output(self, text: str) -> Any:
        return self.check_output(text) if self.output_format is not None else None

    def completed_event(self) -> tuple[dict[str, Any], ev.RunEvent]:
        structured = self.output_format is not None
        terminal = self.event(
            ev.TeamRunCompleted,
            content=self.output_json if structured else self.content,
            content_type="json" if structured else "str",
            metrics=self.metrics(),
            member_runs=self.member_runs(),
            **self.answered_labels(),
        )
        outcome = {
            "status": Run.Status.COMPLETED,
            "output": content_text(self.content),
            "output_json": self.output_json,
        }
        return outcome, terminal

    def error_fields(self) -> dict[str, Any]:
        return {"member_runs": self.member_runs()}

    def partial_output(self) -> str:
        """What to keep of a run that did not finish: the leader's words so far, else the answers of
        the members that finished."""
        text = "".join(self.partial)
        if text:
            return text
        done = [c for c in self.children if c.status == "completed"]
        return "\n\n".join(f"[{c.component_id}] {content_text(c.content)}" for c in done)

    async def deliver(self) -> AsyncIterator[ev.RunEvent]:
        if self.stream and self.hold_output:
            yield self.event(ev.TeamRunContent, content=self.content)

    # ---- the leader ------------------------------------------------------------------------

    def _roster(self) -> str:
        lines = []
        for member_id, m in self.members.items():
            kind = "team" if m.member_team_id else "agent"
            about = m.role or (m.member_team.description if m.member_team_id else m.agent.description)
            name = m.member_team.name if m.member_team_id else m.agent.name
            lines.append(f"- {member_id} ({kind}, {name}){': ' + about if about else ''}")
        return "Members:\n" + ("\n".join(lines) if lines else "(none)")

    def _context(self) -> list[dict[str, Any]]:
        parts = [
            p for p in (self.team.instructions.strip(), _MODE_GUIDANCE.get(self.team.mode, ""), self._roster()) if p
        ]
        if self.response_format is not None:
            parts.append(SCHEMA_INSTRUCTION.format(schema=json.dumps(self.team.output_schema)))
        return [
            {"role": "system", "content": "\n\n".join(parts)},
            *self.h.history,
            {"role": "user", "content": user_content(self.h.message, self.h.images)},
        ]

    def _leader_call(self, tools: list[Tool]) -> AsyncIterator[ev.RunEvent]:
        """One model call of the leader; its text streams as TeamRunContent. Sets self.response."""
        return self.model_call(self.team.model, tools)

    def _tool_info(
        self,
        call: ToolCallRequest,
        args: Any,
        *,
        result: str | None = None,
        tool_call_error: bool | None = None,
        started: float | None = None,
        child: Any = None,
    ) -> dict[str, Any]:
        """The leader's call of a member as agno's ToolExecution (with the member's run as its
        `child_run_id` and, once answered, its timing)."""
        return tool_call_dict(
            tool_call_id=call.id,
            tool_name=call.name,
            tool_args=args,
            result=result,
            error=tool_call_error,
            started=started,
            ended=time.time() if started is not None and tool_call_error is not None else None,
            child_run_id=str(child.run_id) if getattr(child, "run_id", None) else None,
        )

    def _member_for(self, call: ToolCallRequest) -> tuple[TeamMember | None, dict[str, Any], str]:
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            return None, {}, "The arguments are not valid JSON."
        if not isinstance(args, dict):
            return None, {}, "The arguments must be a JSON object."
        member = self.members.get(str(args.get("member_id", "")))
        if member is None:
            known = ", ".join(self.members) or "none"
            return None, args, f"No member {args.get('member_id')!r}. Members: {known}."
        return member, args, ""

    def _child(
        self, member: TeamMember, message: str, *, may_pause: bool = True, resume: Resume | None = None
    ) -> ChildRun:
        if resume is None and len(self.earlier_member_runs) + len(self.children) >= self.team.max_member_calls:
            raise MemberLimitExceeded(
                f"Team {self.team.slug!r} may run at most {self.team.max_member_calls} member runs per run."
            )
        child = ChildRun(
            parent_run_id=self.h.run_id,
            session_id=self.h.session_id,
            user_id=self.h.user_id,
            message=message,
            stream=self.stream,
            agent=member.agent if member.agent_id else None,
            team=member.member_team if member.member_team_id else None,
            members_of=self.h.members_of,
            parent=self,
            depth=self.h.depth + 1,
            max_depth=self.h.max_depth,
            session_state=self.session_state,  # as the team's pre-hooks left it
            may_pause=may_pause and self.may_pause,
            resume=resume,
        )
        self.children.append(child)
        return child

    # ---- the modes -------------------------------------------------------------------------

    async def _route(self) -> AsyncIterator[ev.RunEvent]:
        tool = _tool(
            "route_to_member",
            "Hand the user's message to the one member best placed to answer it.",
            {"member_id": {"type": "string", "enum": list(self.members), "description": "The member's id."}},
            ["member_id"],
        )
        async for item in self._leader_call([tool] if self.members else []):
            yield item
        response = self.response
        if not response.tool_calls:
            self.content = response.content  # the leader answered itself (e.g. a greeting)
            return
        call = response.tool_calls[0]
        self.budget.start_tool_calls(1)
        member, args, problem = self._member_for(call)
        began = time.time()
        yield self.event(ev.TeamToolCallStarted, tool=self._tool_info(call, args, started=began))
        if member is None:
            yield self.event(
                ev.TeamToolCallError,
                tool=self._tool_info(call, args, tool_call_error=True, started=began),
                error=problem,
            )
            raise RoutingError(f"The leader routed the message to no valid member: {problem}")
        child = self._child(member, self.h.message)
        self.pause_point = _point(Team.Mode.ROUTE, member, self.h.message, call, args, [])
        async for data in child.events():
            if (item := self.member_event(data, child)) is not None:
                yield item
        self.content = content_text(child.content)
        info = self._tool_info(
            call, args, result=self.shown(self.content), tool_call_error=False, started=began, child=child
        )
        yield self.event(ev.TeamToolCallCompleted, tool=info, content=self.shown(self.content))

    async def _coordinate(self) -> AsyncIterator[ev.RunEvent]:
        tool = _tool(
            "delegate_task_to_member",
            "Give a member a task and get its answer back.",
            {
                "member_id": {"type": "string", "enum": list(self.members), "description": "The member's id."},
                "task": {"type": "string", "description": "A clear, self-contained task for the member."},
            },
            ["member_id", "task"],
        )
        limit = self.team.max_member_calls
        while True:
            offered = [tool] if self.members and self.delegations < limit else []
            async for item in self._leader_call(offered):
                yield item
            response = self.response
            if not (response.tool_calls and offered):
                if response.tool_calls and not response.content:
                    raise MemberLimitExceeded(
                        f"The leader kept delegating after the limit of {limit} delegations for this run."
                    )
                self.content = response.content
                return
            calls = response.tool_calls[: limit - self.delegations]
            self.budget.start_tool_calls(len(calls))
            self.delegations += len(calls)
            self.messages_sent.append(
                {
                    "role": "assistant",
                    "content": response.content or None,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls
                    ],
                }
            )
            async for item in self._delegate(calls):
                yield item

    async def _delegate(self, calls: list[ToolCallRequest]) -> AsyncIterator[ev.RunEvent]:
        """The leader's delegations, one after the other (a member run that pauses pauses the team
        here: `pause_point` says which call, and which calls come after it)."""
        for position, call in enumerate(calls):
            member, args, problem = self._member_for(call)
            if member is not None and not str(args.get("task", "")).strip():
                member, problem = None, "The task must not be empty."
            began = time.time()
            yield self.event(ev.TeamToolCallStarted, tool=self._tool_info(call, args, started=began))
            if member is None:
                info = self._tool_info(call, args, result=None, tool_call_error=True, started=began)
                yield self.event(ev.TeamToolCallError, tool=info, error=problem)
                self.messages_sent.append({"role": "tool", "tool_call_id": call.id, "content": f"Error: {problem}"})
                continue
            child = self._child(member, str(args["task"]))
            self.pause_point = _point(
                Team.Mode.COORDINATE, member, str(args["task"]), call, args, calls[position + 1 :]
            )
            async for data in child.events():
                if (item := self.member_event(data, child)) is not None:
                    yield item
            answer = content_text(child.content)
            info = self._tool_info(
                call, args, result=self.shown(answer), tool_call_error=False, started=began, child=child
            )
            yield self.event(ev.TeamToolCallCompleted, tool=info, content=self.shown(answer))
            self.messages_sent.append({"role": "tool", "tool_call_id": call.id, "content": answer})

    async def _collaborate(self) -> AsyncIterator[ev.RunEvent]:
        members = list(self.members.values())
        if len(members) > self.team.max_member_calls:
            raise MemberLimitExceeded(
                f"Team {self.team.slug!r} has {len(members)} members; it may run at most "
                f"{self.team.max_member_calls} member runs per run."
            )
        # Members answering at the same time cannot pause the team: their calls that need a person
        # are refused (fail closed).
        children = [self._child(m, self.h.message, may_pause=False) for m in members]
        async for which, data in merge([child.events() for child in children]):
            if (item := self.member_event(data, children[which])) is not None:
                yield item
        answers = "\n\n".join(f"## {c.component_id}\n{content_text(c.content)}" for c in children)
        self.messages_sent.append(
            {"role": "user", "content": f"Your team's answers to my message:\n\n{answers}\n\nWrite the team's answer."}
        )
        async for item in self._leader_call([]):
            yield item
        self.content = self.response.content


def _point(
    mode: str, member: TeamMember, task: str, call: ToolCallRequest, args: Any, remaining: list[ToolCallRequest]
) -> dict[str, Any]:
    """Where a team stands while a member runs, kept should the member pause it: the delegation
    (its call and task) and the leader's calls after it in the same turn."""
    return {
        "mode": mode,
        "member_id": member.member_id,
        "task": task,
        "call": {"id": call.id, "name": call.name, "arguments": call.arguments},
        "args": args if isinstance(args, dict) else {},
        "remaining": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in remaining],
    }
