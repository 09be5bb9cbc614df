"""An agent run going on after its pause (docs/human-in-the-loop.md): the decided tool calls first
(the approved ones run, the rejected ones and external results are told to the model), then the
model loop as usual. What every kind shares when it goes on (its counts added to the earlier
ones, its events numbered after them, no pre-hooks again) is `engine/outcome.Execution`'s; the
claim and the decisions are engine/approvals.py's. A team member's run goes on through this too
(engine/team.ChildRun), as its team's continuation resumes it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from agents_app import events as ev
from agents_app.engine.pause import tool_execution
from agents_app.engine.protocol import Resume
from agents_app.engine.runner import RunHandle, _Execution
from agents_app.providers.base import ToolCallRequest
from agents_app.tools.registry import EXTERNAL_EXECUTION
from sessions_app.models import ToolApproval


@dataclass(slots=True, kw_only=True)
class ContinuedRunHandle(RunHandle):
    """A paused agent run, claimed (running again) with its decisions (`resume`: its resume state,
    the decided calls, its stored events)."""

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        return execute_continued(self, stream=stream)


def continued_agent_handle(*, agent: Any, user_id: Any, session_id: Any, session_state: Any, resume: Resume) -> Any:
    """The handle of a claimed paused agent run (the root of a continue, or a member resumed by its team)."""
    return ContinuedRunHandle(
        agent=agent,
        user_id=user_id,
        run_id=resume.run_id,
        session_id=session_id,
        message=resume.message,
        created_at=resume.created_at,
        session_state=session_state if isinstance(session_state, dict) else {},
        prior_events=resume.prior_events,
        resume=resume,
    )


def _rejection(note: str) -> str:
    return f"Rejected by the user: {note}" if note else "Rejected by the user."


def decided_execution(decided: dict[str, Any]) -> dict[str, Any]:
    """A decided call as agno's ToolExecution shows it in RunContinued."""
    approved = decided["status"] == ToolApproval.Status.APPROVED
    return tool_execution(
        tool_call_id=decided["tool_call_id"],
        tool_name=decided["tool_name"],
        tool_args=decided.get("approved_args") or decided["tool_args"],
        kind=decided["requirement"],
        schema=None,
        created_at=decided["created_at"],
        approval_id=decided["approval_id"],
        confirmed=approved,
        note=decided.get("note") or None,
        result=decided.get("result"),
    )


def decided_calls(resume: Resume | None) -> list[dict[str, Any]]:
    """The decided calls of a continue, wherever in the tree of paused runs they wait."""
    while resume is not None and resume.child is not None:
        resume = resume.child
    return [decided_execution(d) for d in resume.decided] if resume is not None else []


class _ContinuedExecution(_Execution):
    """An agent run going on after its pause."""

    def __init__(self, handle: ContinuedRunHandle, *, stream: bool) -> None:
        super().__init__(handle, stream=stream)  # its counts and events go on (Execution.resume_from)
        assert handle.resume is not None
        self.decided = handle.resume.decided
        state = handle.resume.state
        self.messages_sent = list(state.get("messages_sent") or [])
        self.new_messages = list(state.get("new_messages") or [])
        self.tool_calls_used = int(state.get("tool_calls_used") or 0)

    def started_event(self) -> ev.RunEvent:
        return self.event(ev.RunContinued, tools=[decided_execution(d) for d in self.decided])

    async def body(self) -> AsyncIterator[ev.RunEvent]:
        async for item in self._apply_decisions():
            yield item
        async for item in super().body():
            yield item

    async def _apply_decisions(self) -> AsyncIterator[ev.RunEvent]:
        to_run: list[ToolCallRequest] = []
        for decided in self.decided:
            call_id, name = decided["tool_call_id"], decided["tool_name"]
            if decided["status"] != ToolApproval.Status.APPROVED:
                text = _rejection(decided.get("note") or "")
                info = {
                    "tool_call_id": call_id,
                    "tool_name": name,
                    "tool_args": decided["tool_args"],
                    "result": None,
                    "tool_call_error": True,
                    "confirmed": False,
                    "confirmation_note": decided.get("note") or None,
                }
                yield self.event(ev.ToolCallError, tool=info, error=text)
                self._tool_message(call_id, name, text)
            elif decided["requirement"] == EXTERNAL_EXECUTION:
                result = decided.get("result") or ""
                info = {
                    "tool_call_id": call_id,
                    "tool_name": name,
                    "tool_args": decided["tool_args"],
                    "result": result,
                    "tool_call_error": False,
                    "external_execution_required": True,
                }
                yield self.event(ev.ToolCallCompleted, tool=info, content=result)
                self._tool_message(call_id, name, result)
            else:
                to_run.append(ToolCallRequest(call_id, name, json.dumps(decided["approved_args"])))
        if to_run:
            async for item in self.run_calls(to_run):
                yield item

    def _tool_message(self, call_id: str, name: str, content: str) -> None:
        self.messages_sent.append({"role": "tool", "tool_call_id": call_id, "content": content})
        self.new_messages.append({"role": "tool", "tool_call_id": call_id, "content": content, "name": name})


async def execute_continued(handle: ContinuedRunHandle, *, stream: bool = False) -> AsyncIterator[ev.RunEvent]:
    """Go on with a claimed paused run, yielding its new events (RunContinued first); the last is
    terminal (or RunPaused again), and the run is stored before it is yielded."""
    async for item in _ContinuedExecution(handle, stream=stream).run():
        yield item
