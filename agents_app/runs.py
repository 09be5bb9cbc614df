"""The run service: start, wait for or stream a run of any kind, for every edge (REST, websocket,
agno routes, admin "try it") and for a developer's own code. It joins the engine (one prepared run,
no processes) and the runtime (live runs across processes, no kinds): a kind's `prepare`, the
busy-session policy, the launch, the result. Edges take the kind from their URL.

Preparing takes two steps so that an async edge pays one thread hop in the common case:
`prepare_or_defer` (sync) returns a handle, or a `Deferred` start when the session is busy;
`resolve` (async) then applies the busy-session policy without holding a thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction

from agents_app import events as ev
from agents_app.engine.approvals import Decision, run_continue_prepare
from agents_app.engine.expiry import SUPERSEDED_MESSAGE, paused_run_end, paused_runs_expire
from agents_app.engine.protocol import RunnableHandle
from agents_app.engine.runner import RunHandle, RunResult, result_from_events, run_prepare
from agents_app.engine.team import TeamRunHandle, team_run_prepare
from agents_app.engine.workflow import WorkflowRunHandle, workflow_run_prepare
from agents_app.idempotency import IdempotentReplay, fingerprint, remember, replayed_run
from agents_app.quotas import quota_check
from agents_app.runtime import LiveRun, event_from_dict, runtime
from agents_app.selectors import (
    AgentNotFound,
    TeamNotFound,
    WorkflowNotFound,
    agent_get_active,
    team_get_active,
    workflow_get_active,
)
from agents_app.throttles import rate_check
from sessions_app.access import ALL, Allowed
from sessions_app.db import db_call
from sessions_app.errors import ImagesNotAccepted
from sessions_app.images import ImageInput, image_files_delete
from sessions_app.models import Run
from sessions_app.services import SessionBusy, SessionPaused, session_state_merge

# By kind: its `prepare` function and the keyword that names its component; how to get it, active.
_PREPARE: dict[str, tuple[Callable[..., RunnableHandle], str]] = {
    "agent": (run_prepare, "agent_id"),
    "team": (team_run_prepare, "team_id"),
    "workflow": (workflow_run_prepare, "workflow_id"),
}
_GET_ACTIVE: dict[str, Callable[..., Any]] = {
    "agent": agent_get_active,
    "team": team_get_active,
    "workflow": workflow_get_active,
}
_NOT_FOUND = {"agent": AgentNotFound, "team": TeamNotFound, "workflow": WorkflowNotFound}


def _prepare(
    *,
    kind: str,
    component_id: str,
    session_state: dict[str, Any] | None = None,
    images: Sequence[ImageInput] = (),
    idempotency_key: str | None = None,
    **kwargs: Any,
) -> RunnableHandle:
    """`_prepare_start`, or, with an `Idempotency-Key`, the start of a run recorded under it:
    IdempotentReplay when the key started a run already (agents_app.idempotency)."""
    if idempotency_key is None:
        return _prepare_start(
            kind=kind, component_id=component_id, session_state=session_state, images=images, **kwargs
        )
    user = kwargs["user"]
    print_ = fingerprint(
        kind=kind,
        component_id=component_id,
        message=kwargs.get("message", ""),
        session_id=kwargs.get("session_id"),
        session_state=session_state,
        images=images,
    )
    handle = None
    try:
        with transaction.atomic():
            earlier = replayed_run(user=user, key=idempotency_key, fingerprint=print_)
            if earlier is not None:
                raise IdempotentReplay(earlier)
            handle = _prepare_start(
                kind=kind, component_id=component_id, session_state=session_state, images=images, **kwargs
            )
            remember(user=user, key=idempotency_key, fingerprint=print_, run_id=handle.run_id)
    except IntegrityError:
        # A request with the same key committed its run meanwhile: this start is rolled back.
        if handle is not None:
            image_files_delete(handle.image_files)
        earlier = replayed_run(user=user, key=idempotency_key, fingerprint=print_)
        if earlier is None:
            raise
        raise IdempotentReplay(earlier) from None
    except BaseException:
        if handle is not None:
            image_files_delete(handle.image_files)
        raise
    return handle


def _prepare_start(
    *,
    kind: str,
    component_id: str,
    session_state: dict[str, Any] | None = None,
    images: Sequence[ImageInput] = (),
    **kwargs: Any,
) -> RunnableHandle:
    """The kind's preparation; with `session_state` (agno's run field), its merge into the session
    in the same transaction, so a run that never started leaves the session's state as it was.
    `images` go to agents and teams; a workflow refuses them (its steps are given text)."""
    prepare, key = _PREPARE[kind]
    if images:
        if kind == "workflow":
            raise ImagesNotAccepted("Workflows take text only: send images to an agent or a team.")
        kwargs["images"] = images
    # Rate limits and quotas first: a run that may not start writes nothing (agents_app.throttles,
    # agents_app.quotas).
    windows = rate_check(user=kwargs["user"], kind=kind, component_id=component_id)
    caps = quota_check(user=kwargs["user"], kind=kind, component_id=component_id)
    if not session_state:
        handle = _with_paused_policy(lambda: prepare(**{key: component_id}, **kwargs))
        handle.quota = caps
        if windows is not None:  # counted once the run has started (not when busy, refused or failed)
            windows.record()
        return handle
    handle = None
    try:
        with transaction.atomic():
            handle = _with_paused_policy(lambda: prepare(**{key: component_id}, **kwargs))
            session_state_seed(handle, session_state)
    except BaseException:
        if handle is not None:  # the run's start was rolled back: so are its image files
            image_files_delete(handle.image_files)
        raise
    handle.quota = caps
    if windows is not None:
        windows.record()
    return handle


def _with_paused_policy(start: Callable[[], RunnableHandle]) -> RunnableHandle:
    """`start()`, under the component's paused-session policy when the session waits for a
    decision on a paused run's tool calls (docs/human-in-the-loop.md): with "expire", that run ends
    now (its calls never run) and this one starts; with "reject" (SessionPaused, 409), only if its
    approval timeout has passed and no sweep ended it yet."""
    try:
        return start()
    except SessionPaused as paused:
        if paused.policy == "expire":
            for run_id in paused.paused_run_ids:
                paused_run_end(run_id=run_id, reason=SUPERSEDED_MESSAGE, channel="new_message")
        elif not paused_runs_expire(run_ids=paused.paused_run_ids):
            raise
        return start()


def component_get_active(kind: str, component_id: str, *, allowed: Allowed = ALL) -> Any:
    """The active agent, team or workflow (sync); raises the kind's NotFound domain error, also for
    one outside `allowed` (the request's scope: sessions_app.access)."""
    return _GET_ACTIVE[kind](**{_PREPARE[kind][1]: component_id}, allowed=allowed)


def component_check_allowed(kind: str, component_id: str, allowed: Allowed) -> None:
    """Raise the kind's NotFound domain error for a component outside `allowed` (no query)."""
    if not allowed.permits(kind, component_id):
        raise _NOT_FOUND[kind](f"No active {kind} with id {component_id!r}.")


# ---- preparing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Deferred:
    """A start whose session was busy: prepared later, by `resolve`, under the busy-session policy."""

    kind: str
    component_id: str
    user: Any
    message: str
    session_id: UUID | None
    session_state: dict[str, Any] | None = None
    images: Sequence[ImageInput] = ()
    idempotency_key: str | None = None


def prepare_or_defer(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    session_state: dict[str, Any] | None = None,
    images: Sequence[ImageInput] = (),
    idempotency_key: str | None = None,
    allowed: Allowed = ALL,
) -> RunnableHandle | Deferred:
    """Sync, one transaction: validate and persist the start of a run (the user's message and a
    running Run with its `images`, and `session_state` merged into the session's), or, when the
    session has a run going, a `Deferred` start. Raises the domain errors of a start that cannot be
    (unknown component, or one outside `allowed`; unknown or ended session, invalid message, images
    a workflow refuses)."""
    component_check_allowed(kind, component_id, allowed)
    try:
        return _prepare(
            kind=kind,
            component_id=component_id,
            user=user,
            message=message,
            session_id=session_id,
            session_state=session_state,
            images=images,
            idempotency_key=idempotency_key,
        )
    except SessionBusy:
        return Deferred(kind, component_id, user, message, session_id, session_state, images, idempotency_key)


async def resolve(start: RunnableHandle | Deferred) -> RunnableHandle:
    """The handle of a start; a deferred one is prepared now, under its component's busy-session
    policy (reject: SessionBusy; queue: wait; interrupt: cancel the running run, then go)."""
    if not isinstance(start, Deferred):
        return start
    return await runtime.prepare_with(
        _prepare,
        kind=start.kind,
        component_id=start.component_id,
        user=start.user,
        message=start.message,
        session_id=start.session_id,
        session_state=start.session_state,
        images=start.images,
        idempotency_key=start.idempotency_key,
    )


# ---- answering a repeated request (agents_app.idempotency) -----------------------------------------


def replay_handle(run_id: UUID) -> RunnableHandle:
    """A handle of a run that was started earlier (to render its result as its own request would
    have): its component and ids, nothing to execute."""
    run = Run.objects.select_related("agent", "team", "workflow").get(pk=run_id)
    common = {
        "user_id": run.user_id,
        "run_id": run.pk,
        "session_id": run.session_id,
        "message": run.input,
        "created_at": run.created_at,
    }
    if run.team_id:
        return TeamRunHandle(team=run.team, members_of={}, **common)
    if run.workflow_id:
        return WorkflowRunHandle(workflow=run.workflow, steps=[], members_of={}, **common)
    return RunHandle(agent=run.agent, **common)


async def replay_events(run_id: UUID, *, user: Any) -> AsyncIterator[dict[str, Any]]:
    """The run's events from the first, live while it runs, stored once it ended (any process)."""
    return await runtime.subscribe(run_id, user=user, after_event_index=-1)


async def follow_events(run_id: UUID, *, user: Any, after_event_index: int) -> AsyncIterator[dict[str, Any]]:
    """The run's events after `after_event_index`, live while it runs (what a reader that stopped
    reading, e.g. the terminal chat after a Ctrl-C, picks up again)."""
    return await runtime.subscribe(run_id, user=user, after_event_index=after_event_index)


async def acancel(run_id: UUID, *, user: Any) -> str:
    """Stop one of `user`'s runs wherever it executes (the REST API's and the websocket's cancel):
    "cancelling", or the final status of a run that had ended."""
    return await runtime.cancel(run_id, user=user)


async def replay_run_events(run_id: UUID, *, user: Any) -> AsyncIterator[ev.RunEvent]:
    """`replay_events` as event objects (what a run's own stream yields), without the RunEnded notice."""
    async for data in await replay_events(run_id, user=user):
        if data.get("event") != "RunEnded":
            yield event_from_dict(data)


async def replay_result(run_id: UUID, *, user: Any) -> tuple[RunnableHandle, list[ev.RunEvent], dict[str, Any]]:
    """The run's handle, events and JSON result once it ends, as the request that started it got
    (or will get) them."""
    events = [event async for event in replay_run_events(run_id, user=user)]
    handle = await db_call(replay_handle, run_id)
    return handle, events, handle.result(events)


async def prepare(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    images: Sequence[ImageInput] = (),
    allowed: Allowed = ALL,
    version: int | None = None,
) -> RunnableHandle:
    """Prepare a run from async code, with the busy-session policy (and the message's `images`,
    checked by sessions_app.images); a runnable outside `allowed` is the kind's NotFound.
    `version`: run it as that configuration version configured it (agents_app.versions; what an
    eval pinned to a version runs), not as it is now."""
    component_check_allowed(kind, component_id, allowed)
    pin = {"version": version} if version is not None else {}
    return await runtime.prepare_with(
        _prepare,
        kind=kind,
        component_id=component_id,
        user=user,
        message=message,
        session_id=session_id,
        images=images,
        **pin,
    )


def session_state_seed(handle: RunnableHandle, state: dict[str, Any] | None) -> None:
    """Sync: merge `state`'s top-level keys into the session's state as the run starts (the caller's
    values win), and into what the run's tools, hooks and steps see. agno's `session_state` run field."""
    if state:
        session_state_merge(session_id=handle.session_id, state_set=state, state_unset=[])
        handle.session_state = {**handle.session_state, **state}  # type: ignore[attr-defined]


# ---- running ---------------------------------------------------------------------------------------


_PAUSES = frozenset({"RunPaused", "TeamRunPaused", "WorkflowPaused"})


def launch(handle: RunnableHandle, *, stream: bool = True) -> LiveRun:
    """Start a prepared run in its own task (call it from a running loop): a reader that stops early,
    or never reads, does not stop or lose the run, and any process can follow or cancel it."""
    live = runtime.launch(handle, stream=stream)
    if live.task is not None:
        live.task.add_done_callback(lambda _task: _after_pause(live))
    return live


def _after_pause(live: LiveRun) -> None:
    """A run that ended paused must expire on time even in a process with no Celery beat: with the
    embedded worker (development: no broker server), make sure it runs, since its sweep expires
    overdue paused runs (otherwise it starts only with the first background hook). One flag check
    when the worker runs or is not embedded."""
    if live.events and type(live.events[-1]).__name__ in _PAUSES:
        from celery import current_app

        from agents_app.embedded_worker import ensure_embedded_worker

        ensure_embedded_worker(current_app)


async def wait_result(handle: RunnableHandle) -> dict[str, Any]:
    """Execute a prepared run to its end (not streamed) and return its JSON result."""
    events = await launch(handle, stream=False).wait()
    return handle.result(events)


async def arun(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Run any kind to its end from your own async code; the result is the REST API's JSON.
    `version`: as that configuration version configured it (see `prepare`)."""
    return await wait_result(
        await prepare(kind, component_id, user=user, message=message, session_id=session_id, version=version)
    )


async def astream(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    version: int | None = None,
) -> AsyncIterator[ev.RunEvent]:
    """`async for event in astream(kind, id, ...)`: a whole run's events (members' or steps' nested)."""
    handle = await prepare(kind, component_id, user=user, message=message, session_id=session_id, version=version)
    async for item in launch(handle).follow():
        yield item


async def arun_events(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    images: Sequence[ImageInput] = (),
    version: int | None = None,
) -> tuple[RunnableHandle, list[ev.RunEvent]]:
    """Run any kind to its end; its handle and every event (for callers that show more than the
    result, such as the admin's "try it"). `images`: sessions_app.images.images_from_json(...).
    `version`: as that configuration version configured it (see `prepare`)."""
    handle = await prepare(
        kind, component_id, user=user, message=message, session_id=session_id, images=images, version=version
    )
    return handle, await launch(handle, stream=False).wait()


def run_events(
    kind: str,
    component_id: str,
    *,
    user: Any,
    message: str,
    session_id: UUID | None = None,
    images: Sequence[ImageInput] = (),
    version: int | None = None,
) -> tuple[RunnableHandle, list[ev.RunEvent]]:
    """The sync wrapper of `arun_events`."""
    return async_to_sync(arun_events)(
        kind, component_id, user=user, message=message, session_id=session_id, images=images, version=version
    )


# ---- continuing a paused run (docs/human-in-the-loop.md) -------------------------------------------


def continue_prepare(
    run_id: UUID,
    *,
    user: Any,
    decisions: list[Decision],
    channel: str,
    agent_id: str | None = None,
    team_id: str | None = None,
    workflow_id: str | None = None,
    any_users_run: bool = False,
) -> RunnableHandle:
    """Sync, one transaction: claim a paused run (of any kind: a team or workflow paused by a member
    or step run goes on with it) with the decisions on its pending tool calls; the handle goes on
    where the run stopped (launch it at once). `agent_id` / `team_id` / `workflow_id`: the run must
    be of that agent, team or workflow (agno's routes). Raises the domain errors of a continue that cannot be (not
    found, not paused, an unknown tool call, invalid decisions)."""
    return run_continue_prepare(
        run_id=run_id,
        user=user,
        decisions=decisions,
        channel=channel,
        agent_id=team_id if team_id is not None else workflow_id if workflow_id is not None else agent_id,
        kind="team" if team_id is not None else "workflow" if workflow_id is not None else None,
        any_users_run=any_users_run,
        # The run's user's quotas apply to what it uses next (429 quota_exceeded, nothing written).
        quota=lambda run: quota_check(user=run.user, kind=_kind_of(run), component_id=_component_of(run).slug),
    )


def _kind_of(run: Any) -> str:
    return "agent" if run.agent_id else "team" if run.team_id else "workflow"


def _component_of(run: Any) -> Any:
    return run.agent or run.team or run.workflow


def continue_follow(handle: RunnableHandle) -> AsyncIterator[ev.RunEvent]:
    """Launch a continued run and follow its new events (RunContinued first)."""
    return launch(handle).follow(len(handle.prior_events) - 1)


async def acontinue_run(
    run_id: UUID, *, user: Any, decisions: list[Decision], channel: str = "python", any_users_run: bool = False
) -> dict[str, Any]:
    """Continue a paused run from your own async code and get its result (the REST API's JSON: it
    may be paused again). `user` decides; with `any_users_run` (an approver), on anyone's run."""
    handle = await db_call(
        continue_prepare, run_id, user=user, decisions=decisions, channel=channel, any_users_run=any_users_run
    )
    return await wait_result(handle)


def continue_run(
    run_id: UUID, *, user: Any, decisions: list[Decision], channel: str = "python", any_users_run: bool = False
) -> dict[str, Any]:
    """The sync wrapper of `acontinue_run`."""
    runner: Callable[..., dict[str, Any]] = async_to_sync(acontinue_run)
    return runner(run_id, user=user, decisions=decisions, channel=channel, any_users_run=any_users_run)


async def astream_continue(
    run_id: UUID, *, user: Any, decisions: list[Decision], channel: str = "python"
) -> AsyncIterator[ev.RunEvent]:
    """`async for event in astream_continue(...)`: a continued run's new events."""
    handle = await db_call(continue_prepare, run_id, user=user, decisions=decisions, channel=channel)
    async for item in continue_follow(handle):
        yield item


# ---- the Python API, by kind (docs/python-api.md) -------------------------------------------------


async def arun_agent(*, agent_id: str, user: Any, message: str, session_id: UUID | None = None) -> RunResult:
    """Run an agent from your own async code and get its RunResult (`.content`, `.status`, `.events`)."""
    handle, events = await arun_events("agent", agent_id, user=user, message=message, session_id=session_id)
    return result_from_events(handle, events)  # type: ignore[arg-type]


def astream_agent(
    *, agent_id: str, user: Any, message: str, session_id: UUID | None = None
) -> AsyncIterator[ev.RunEvent]:
    """`async for event in astream_agent(...)`: a whole agent run as events, from your own async code."""
    return astream("agent", agent_id, user=user, message=message, session_id=session_id)


stream_agent = astream_agent


def run_agent(*, agent_id: str, user: Any, message: str, session_id: UUID | None = None) -> RunResult:
    """The sync wrapper: run an agent from a management command, a Celery task or a sync view."""
    runner: Callable[..., RunResult] = async_to_sync(arun_agent)
    return runner(agent_id=agent_id, user=user, message=message, session_id=session_id)


async def arun_team(*, team_id: str, user: Any, message: str, session_id: UUID | None = None) -> dict[str, Any]:
    """Run a team from your own async code and get its result (as the REST API's JSON)."""
    return await arun("team", team_id, user=user, message=message, session_id=session_id)


def astream_team(
    *, team_id: str, user: Any, message: str, session_id: UUID | None = None
) -> AsyncIterator[ev.RunEvent]:
    """`async for event in astream_team(...)`: a team run's events, its members' nested among them."""
    return astream("team", team_id, user=user, message=message, session_id=session_id)


def run_team(*, team_id: str, user: Any, message: str, session_id: UUID | None = None) -> dict[str, Any]:
    """The sync wrapper: run a team from a management command, a Celery task or a sync view."""
    return async_to_sync(arun_team)(team_id=team_id, user=user, message=message, session_id=session_id)


async def arun_workflow(*, workflow_id: str, user: Any, message: str, session_id: UUID | None = None) -> dict[str, Any]:
    """Run a workflow from your own async code and get its result (as the REST API's JSON)."""
    return await arun("workflow", workflow_id, user=user, message=message, session_id=session_id)


def astream_workflow(
    *, workflow_id: str, user: Any, message: str, session_id: UUID | None = None
) -> AsyncIterator[ev.RunEvent]:
    """`async for event in astream_workflow(...)`: a workflow run's events, its steps' runs nested."""
    return astream("workflow", workflow_id, user=user, message=message, session_id=session_id)


def run_workflow(*, workflow_id: str, user: Any, message: str, session_id: UUID | None = None) -> dict[str, Any]:
    """The sync wrapper: run a workflow from a management command, a Celery task or a sync view."""
    return async_to_sync(arun_workflow)(workflow_id=workflow_id, user=user, message=message, session_id=session_id)
