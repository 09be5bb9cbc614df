"""The workflow engine: ordered steps, each step's output the next step's input.

Step kinds: an agent or a team answers the previous output (a child run, as a team's member runs:
stored on its own, its events forwarded with `parent_run_id`, `step_name` and `step_index`); a
registered Python function (agents_app.workflows) returns the output; a condition step runs its own
steps only when its function returns a true value; a parallel step runs its own steps at the same
time on the same input and joins their outputs. Every step reads and may change the workflow's
session state, which is saved with the session when the run ends (completed or not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async

from agents_app import events as ev
from agents_app.engine.children import ChildCancelled, ChildFailed, DelegationDepthExceeded, content_text, merge
from agents_app.engine.outcome import Execution
from agents_app.engine.pause import ChildPaused
from agents_app.engine.protocol import PreparedRun, Resume, check_message
from agents_app.engine.resume import decided_calls
from agents_app.engine.team import ChildRun
from agents_app.models import TeamMember, Workflow, WorkflowStep
from agents_app.pricing import as_number
from agents_app.selectors import StepNode, workflow_get_active, workflow_steps_tree
from agents_app.versions import materialize_workflow, pinned, version_for_run
from agents_app.workflows.registry import StepInput, step_registry
from sessions_app.conf import agentos_settings
from sessions_app.models import Run
from sessions_app.services import run_start
from telemetry_app.schemas import EventType

logger = logging.getLogger(__name__)


class StepFailed(Exception):
    """A step's function raised, timed out or is not registered, or a step's agent or team is off."""

    error_type = "step_function_error"

    def __init__(self, message: str, *, error_type: str = "step_function_error") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(slots=True, kw_only=True)
class WorkflowRunHandle(PreparedRun):
    """What `workflow_run_prepare` persisted and the workflow engine needs."""

    kind = "workflow"
    error_cls = ev.WorkflowError
    workflow: Workflow
    steps: list[StepNode]
    members_of: dict[int, list[TeamMember]]
    # The session's state when the run started; the run works on a copy that its steps share.
    session_state: dict[str, Any] = field(default_factory=dict)

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        return WorkflowExecution(self, stream=stream).run()

    def result_fields(self, started: dict[str, Any], terminal: dict[str, Any], completed: bool) -> dict[str, Any]:
        """agno's WorkflowRunOutput names: the steps' results and the session state; the failed step."""
        fields = {
            "step_results": terminal.get("step_results") or [],
            "session_state": terminal.get("session_state") or {},
        }
        if terminal.get("event") == ev.WorkflowPaused.name:  # where it waits, agno's way (step_requirements)
            fields.update(
                {key: terminal.get(key) for key in ("paused_step_name", "paused_step_index", "step_requirements")},
                pause_kind=terminal.get("pause_kind") or "executor",
            )
        return fields if completed else {**fields, "failed_step": terminal.get("step_name") or None}


def workflow_run_prepare(
    *, workflow_id: str, user: Any, message: str, session_id: UUID | None = None, version: int | None = None
) -> WorkflowRunHandle:
    """Validate, then persist the user's message and a running workflow Run (sync; one transaction)."""
    check_message(message)
    workflow = workflow_get_active(workflow_id=workflow_id)
    if version is None:
        steps, members = workflow_steps_tree(workflow)
        version_id, version_number = version_for_run("workflow", workflow, steps=steps)
    else:  # as that version configured it (agents_app.versions); its steps' agents and teams as now
        pin = pinned("workflow", workflow, version)
        (workflow, steps, members), version_id, version_number = materialize_workflow(pin, workflow), pin.pk, pin.number
    started = run_start(
        kind="workflow",
        component=workflow,
        user=user,
        message=message,
        session_id=session_id,
        history_runs=None,
        config_version_id=version_id,
    )
    return WorkflowRunHandle(
        workflow=workflow,
        steps=steps,
        members_of=members,
        user_id=user.pk,
        run_id=started.run.pk,
        session_id=started.session.pk,
        message=message,
        session_state=started.session.state if isinstance(started.session.state, dict) else {},
        created_at=started.run.created_at,
        session_created=started.session_created,
        config_version=version_number,
    )


_FAILURES = (ChildFailed, DelegationDepthExceeded, StepFailed)


class WorkflowExecution(Execution):
    """One workflow run while it executes; its lifecycle (events, terminal event, storing) is `Execution`'s."""

    kind = "workflow"
    telemetry_type = EventType.WORKFLOW
    error_cls = ev.WorkflowError
    cancelled_cls = ev.WorkflowCancelled
    paused_cls = ev.WorkflowPaused
    failures = _FAILURES

    def __init__(self, handle: WorkflowRunHandle, *, stream: bool) -> None:
        super().__init__(handle, stream=stream)
        self.h = handle
        self.workflow = handle.workflow
        self.outputs: dict[str, str] = {}
        self.results: list[dict[str, Any]] = []
        self.failed_step = ""
        # agno's WorkflowMetrics: per step that ran an agent or a team, its executor and its run's metrics.
        self.step_metrics: dict[str, dict[str, Any]] = {}
        # The top-level step whose agent or team run is running (what a pause keeps: where to go on).
        self.pause_step: dict[str, Any] | None = None
        if self.resume is not None:  # a continued workflow: what its steps did before the pause
            state = self.prior
            self.outputs = dict(state.get("outputs") or {})
            self.results = list(state.get("results") or [])
            self.step_metrics = dict(state.get("step_metrics") or {})

    def step_event(self, data: dict[str, Any], step: WorkflowStep, index: Any) -> ev.RunEvent:
        return self.forward(data, workflow_id=self.workflow.slug, step_name=step.name, step_index=index)

    def own_metrics(self) -> dict[str, Any]:
        # A workflow calls no model itself: its steps' runs carry (and store) their own tokens, so
        # adding up stored runs never counts a token twice.
        duration = time.perf_counter() - self.started
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "time_to_first_token": None,
            "duration": duration,
        }

    def metrics(self) -> dict[str, Any]:
        """What the run reports: its steps' tokens added up, and agno's `steps` (WorkflowMetrics)."""
        totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cache_read_tokens": 0}
        for step in self.step_metrics.values():
            for key in totals:
                totals[key] += int((step.get("metrics") or {}).get(key) or 0)
        cost = as_number(self.cost + self.children_cost + self._prior_cost("cost"))
        whole = {
            **self.own_metrics(),
            "duration": self.own_metrics()["duration"] + float(self.prior.get("duration") or 0),
        }
        return {**whole, **totals, "cost": cost, "steps": dict(self.step_metrics)}

    def stored_totals(self, metrics: dict[str, Any]) -> dict[str, Any] | None:
        totals = super().stored_totals(metrics)
        if totals is not None:  # its row keeps no tokens of its own (its steps' runs have them)
            totals["metrics"] = {**self.own_metrics(), "duration": self.metrics()["duration"]}
        return totals

    # ---- pausing with a step, and going on (engine/approvals.py) -----------------------------

    def resume_point(self, pause: ChildPaused) -> dict[str, Any]:
        return {
            "outputs": self.outputs,
            "results": self.results,
            "step_metrics": self.step_metrics,
            "point": self.pause_step,
        }

    def paused_fields(self, pause: ChildPaused) -> dict[str, Any]:
        point = self.pause_step or {}
        return {
            "paused_step_name": point.get("name", ""),
            "paused_step_index": point.get("position"),
            "step_results": self.results,
            "step_requirements": [self._step_requirement(point, pause)],
        }

    def _step_requirement(self, point: dict[str, Any], pause: ChildPaused) -> dict[str, Any]:
        """agno's StepRequirement for the paused step: its agent's (or team's) run waits for a
        person (`requires_executor_input`), the run's own requirements as `executor_requirements`.
        agno's client resolves those and sends them back to the workflow continue route; agno's
        other kinds (a step's own confirmation, user input, route selection, output review) are
        features we do not have, so they are always false here."""
        return {
            "step_id": point.get("step_id") or "",
            "step_name": point.get("name", ""),
            "step_index": point.get("position"),
            "step_type": "Step",
            "requires_confirmation": False,
            "confirmed": None,
            "on_reject": "cancel",
            "requires_user_input": False,
            "requires_route_selection": False,
            "requires_output_review": False,
            "requires_executor_input": True,
            "executor_requirements": pause.requirements,
            "executor_id": point.get("executor_id"),
            "executor_name": point.get("executor_name"),
            "executor_run_id": str(pause.child_run_id),
            "executor_type": point.get("executor_type"),
            "executor_session_id": str(self.h.session_id),
        }

    # ---- the lifecycle ---------------------------------------------------------------------

    def started_event(self) -> ev.RunEvent:
        if self.resume is not None:
            point = self.prior.get("point") or {}
            return self.event(
                ev.StepContinued,
                step_name=point.get("name", ""),
                step_index=point.get("position", 0),
                tools=decided_calls(self.resume),
            )
        return self.event(ev.WorkflowStarted, workflow_name=self.workflow.name)

    async def body(self) -> AsyncIterator[ev.RunEvent]:
        holder: list[str] = []
        if self.resume is not None:
            # Go on at the step whose run paused: it resumes (the decisions applied), then the rest.
            point = self.prior.get("point") or {}
            position = int(point.get("position") or 0)
            if position >= len(self.h.steps) or self.h.steps[position].step.name != point.get("name"):
                raise StepFailed("The workflow's steps changed while it was paused.", error_type="step_error")
            out: list[str] = []
            async for item in self._step(
                self.h.steps[position], position, str(point.get("text") or ""), out, resume=self.resume.child
            ):
                yield item
            async for item in self._sequence(self.h.steps[position + 1 :], None, out[0], holder, offset=position + 1):
                yield item
        else:
            async for item in self._sequence(self.h.steps, None, self.h.message, holder):
                yield item
        self.content = holder[-1] if holder else self.h.message

    def completed_event(self) -> tuple[dict[str, Any], ev.RunEvent]:
        terminal = self.event(
            ev.WorkflowCompleted,
            content=self.content,
            metrics=self.metrics(),
            step_results=self.results,
            session_state=self.session_state,
        )
        return {"status": Run.Status.COMPLETED, "output": self.content}, terminal

    def error_type_of(self, exc: BaseException) -> str:
        return "step_error" if isinstance(exc, ChildFailed) else getattr(exc, "error_type", "step_error")

    def error_message_of(self, exc: BaseException) -> str:
        return f"Step {self.failed_step!r} failed: {exc}"

    def error_fields(self) -> dict[str, Any]:
        return {"step_name": self.failed_step, "step_results": self.results}

    def partial_output(self) -> str:
        """A run that did not finish keeps the output of the last step that did."""
        done = [r for r in self.results if r.get("status") == "completed"]
        return content_text(done[-1]["content"]) if done else ""

    # ---- steps -----------------------------------------------------------------------------

    async def _sequence(
        self, nodes: list[StepNode], prefix: list[int] | None, text: str, holder: list[str], offset: int = 0
    ) -> AsyncIterator[ev.RunEvent]:
        current = text
        for position, node in enumerate(nodes, start=offset):
            index: Any = position if prefix is None else [*prefix, position]
            out: list[str] = []
            async for item in self._step(node, index, current, out):
                yield item
            current = out[0]
        holder.append(current)

    async def _step(
        self, node: StepNode, index: Any, text: str, out: list[str], resume: Resume | None = None
    ) -> AsyncIterator[ev.RunEvent]:
        step = node.step
        earlier = next((r for r in self.results if r.get("step_index") == index), None) if resume else None
        if earlier is not None:  # the paused step going on: its StepStarted was sent before the pause
            result = earlier
            result["status"] = "running"
        else:
            yield self.event(ev.StepStarted, step_name=step.name, step_index=index, step_type=step.kind)
            result = {"step_name": step.name, "step_index": index, "step_type": step.kind, "status": "running"}
            self.results.append(result)
        condition: bool | None = None
        child_error: dict[str, str] | None = None
        try:
            kind = step.kind
            if kind in (WorkflowStep.Kind.AGENT, WorkflowStep.Kind.TEAM):
                component = step.agent if kind == WorkflowStep.Kind.AGENT else step.team
                if component is None or not component.is_active:
                    raise StepFailed(f"Its {kind} is missing or inactive.", error_type="step_error")
                child = ChildRun(
                    parent_run_id=self.h.run_id,
                    session_id=self.h.session_id,
                    user_id=self.h.user_id,
                    message=text or self.h.message,
                    stream=self.stream,
                    agent=step.agent if kind == WorkflowStep.Kind.AGENT else None,
                    team=step.team if kind == WorkflowStep.Kind.TEAM else None,
                    members_of=self.h.members_of,
                    depth=0,
                    max_depth=step.team.max_depth if step.team is not None else 1,
                    label={"step_name": step.name},
                    session_state=self.session_state,
                    parent=self,
                    # Only a top-level step may pause the workflow (one inside a parallel or condition
                    # step has its calls that need a person refused, fail closed).
                    may_pause=not isinstance(index, list),
                    resume=resume,
                )
                if not isinstance(index, list):
                    self.pause_step = {
                        "position": index,
                        "name": step.name,
                        "text": text,
                        # What agno's StepRequirement names (the step, its executor).
                        "step_id": str(step.pk) if step.pk is not None else "",
                        "executor_id": component.slug,
                        "executor_name": component.name,
                        "executor_type": str(kind),
                    }
                try:
                    async for data in child.events():
                        yield self.step_event(data, step, index)
                finally:
                    result["run_id"] = str(child.run_id) if child.run_id else None
                    if child.error_type:
                        child_error = {"type": child.error_type, "message": child.error}
                    # What the agent's tools changed in the session state, later steps see.
                    self.session_state.update(child.state_set)
                    for key in child.state_unset:
                        self.session_state.pop(key, None)
                output = content_text(child.content)
                self.step_metrics[step.name] = {
                    "step_name": step.name,
                    "executor_type": kind,
                    "executor_name": component.name,
                    "metrics": child.metrics,
                }
            elif kind == WorkflowStep.Kind.FUNCTION:
                output = content_text(await self._call(step, text))
            elif kind == WorkflowStep.Kind.CONDITION:
                condition = bool(await self._call(step, text))
                output = text
                if condition:
                    holder: list[str] = []
                    async for item in self._sequence(node.children, _as_list(index), text, holder):
                        yield item
                    output = holder[0]
            elif kind == WorkflowStep.Kind.PARALLEL:
                branches = [([], child) for child in node.children]
                sources = [
                    self._step(child, [*_as_list(index), i], text, holder) for i, (holder, child) in enumerate(branches)
                ]
                async for _, item in merge(sources):
                    yield item
                output = "\n\n".join(f"## {child.step.name}\n{holder[0]}" for holder, child in branches)
            else:
                raise StepFailed(f"Unknown step kind {kind!r}.", error_type="step_error")
        except (asyncio.CancelledError, ChildCancelled, GeneratorExit):
            result["status"] = "cancelled"
            raise
        except ChildPaused:
            result["status"] = "paused"
            result["run_id"] = str(child.run_id) if child.run_id else None
            raise
        except BaseException as exc:
            result["status"] = "error"
            # The step's own failure, as a team's member_runs carry it: the run's HTTP status follows
            # it (sessions_app.errors.run_http_status), e.g. a step's budget_exceeded is a 422.
            if isinstance(exc, ChildFailed) and child_error is not None:
                result["error"] = child_error
            elif isinstance(exc, Exception) and getattr(exc, "error_type", ""):
                result["error"] = {"type": exc.error_type, "message": str(exc)}
            self.failed_step = self.failed_step or step.name
            raise
        self.outputs[step.name] = output
        result.update(status="completed", content=output)
        if condition is not None:
            result["condition_result"] = condition
        yield self.event(
            ev.StepCompleted,
            step_name=step.name,
            step_index=index,
            step_type=step.kind,
            content=output,
            condition_result=condition,
        )
        out.append(output)

    async def _call(self, step: WorkflowStep, text: str) -> Any:
        item = step_registry.get(step.function)
        if item is None:
            raise StepFailed(f"No registered step function {step.function!r}.")
        arg = StepInput(
            input=self.h.message,
            previous_output=text,
            outputs=dict(self.outputs),
            state=self.session_state,
            args=dict(step.args or {}),
            workflow_id=self.workflow.slug,
            step_name=step.name,
        )
        timeout = float(agentos_settings.TOOL_TIMEOUT_SECONDS)
        try:
            if item.is_async:
                return await asyncio.wait_for(item.fn(arg), timeout)
            return await asyncio.wait_for(sync_to_async(item.fn, thread_sensitive=False)(arg), timeout)
        except TimeoutError:
            raise StepFailed(f"Function {step.function} timed out after {timeout:g} s.") from None
        except Exception as exc:
            raise StepFailed(f"Function {step.function} raised {type(exc).__name__}: {exc}") from exc


def _as_list(index: Any) -> list[int]:
    return list(index) if isinstance(index, list) else [index]
