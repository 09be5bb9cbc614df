"""The websocket edge for teams and workflows: `ws/teams/<team_id>/` and `ws/workflows/<workflow_id>/`,
with the agent socket's frames (run, cancel, resume) and error frames. Server frames are the team's
or workflow's events, its members' or steps' own events among them (with `parent_run_id`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async

from agents_app.consumers import CLOSE_UNAUTHENTICATED, AgentChatConsumer
from agents_app.engine.children import prepare_with_policy
from agents_app.engine.runner import InvalidRunInput
from agents_app.engine.team import team_run_prepare
from agents_app.engine.workflow import workflow_run_prepare
from agents_app.runtime import SessionBusy, runtime
from agents_app.selectors_teams import TeamNotFound, WorkflowNotFound, team_get_active, workflow_get_active
from agents_app.ws_auth import SUBPROTOCOL
from sessions_app.services import SessionEnded, SessionNotFound

CLOSE_UNKNOWN_COMPONENT = 4404


class _ComponentChatConsumer(AgentChatConsumer):
    kind = ""
    url_kwarg = ""
    not_found: type[Exception] = LookupError

    def lookup(self, component_id: str) -> Any:
        raise NotImplementedError

    def prepare(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def connect(self) -> None:
        self.streams = {}
        self.starting = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.component_id = self.scope["url_route"]["kwargs"][self.url_kwarg]
        try:
            await database_sync_to_async(self.lookup)(self.component_id)
        except self.not_found:
            await self.close(code=CLOSE_UNKNOWN_COMPONENT)
            return
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def start_and_stream(self, message: str, session_id: UUID | None, ref: dict[str, Any]) -> None:
        try:
            handle = await prepare_with_policy(
                self.prepare,
                **{f"{self.kind}_id": self.component_id},
                user=self.user,
                message=message,
                session_id=session_id,
            )
        except SessionNotFound:
            await self.error("unknown_session", f"No such session for this {self.kind}.", **ref)
            return
        except SessionBusy as exc:
            await self.error("session_busy", str(exc), session_id=str(exc.session_id), **ref)
            return
        except SessionEnded as exc:
            await self.error("session_ended", str(exc), session_id=str(exc.session_id), **ref)
            return
        except InvalidRunInput as exc:
            await self.error("invalid_input", str(exc), **ref)
            return
        except self.not_found:
            await self.error(f"unknown_{self.kind}", f"No active {self.kind} {self.component_id!r}.", **ref)
            return
        live = runtime.launch(handle)
        await self.stream(str(live.run_id), -1, ref)


class TeamChatConsumer(_ComponentChatConsumer):
    kind = "team"
    url_kwarg = "team_id"
    not_found = TeamNotFound

    def lookup(self, component_id: str) -> Any:
        return team_get_active(team_id=component_id)

    def prepare(self, **kwargs: Any) -> Any:
        return team_run_prepare(**kwargs)


class WorkflowChatConsumer(_ComponentChatConsumer):
    kind = "workflow"
    url_kwarg = "workflow_id"
    not_found = WorkflowNotFound

    def lookup(self, component_id: str) -> Any:
        return workflow_get_active(workflow_id=component_id)

    def prepare(self, **kwargs: Any) -> Any:
        return workflow_run_prepare(**kwargs)
