"""Workflows through the real stack: the REST endpoint, the runtime, the workflow engine, the agent
and team engines for agent and team steps, and the scripted model server over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents_app.models import Workflow, WorkflowStep
from agents_app.tools.context import RunContext
from agents_app.tools.registry import tool_registry
from agents_app.workflows.registry import StepInput, step_function, step_registry
from sessions_app.models import Run, Session
from tests.conftest import BOOKKEEPING_EVENTS, bearer, parse_sse, without_bookkeeping
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _test_functions() -> Iterator[None]:
    @step_function
    def shout(step: StepInput) -> str:
        """Upper-case the previous output."""
        step.state["shouted"] = step.state.get("shouted", 0) + 1
        return step.previous_output.upper()

    @step_function
    async def count_runs(step: StepInput) -> str:
        step.state["runs"] = step.state.get("runs", 0) + 1
        return f"{step.previous_output} (run {step.state['runs']}, input {step.input!r})"

    @step_function
    def explode(step: StepInput) -> str:
        raise RuntimeError("boom")

    @step_function
    async def slow_echo(step: StepInput) -> dict[str, Any]:
        await asyncio.sleep(float(step.args.get("seconds", 0)))
        return {"echo": step.previous_output, "tag": step.args.get("tag")}

    yield
    for name in ("shout", "count_runs", "explode", "slow_echo"):
        step_registry.unregister(name)


def make_workflow(slug: str, steps: list[dict[str, Any]]) -> Workflow:
    """Steps as dicts; a "steps" key nests steps inside a condition or parallel step."""
    workflow = WorkflowFactory(slug=slug, name=slug.title())

    def add(items: list[dict[str, Any]], parent: WorkflowStep | None) -> None:
        for order, item in enumerate(items):
            children = item.pop("steps", [])
            step = WorkflowStepFactory(workflow=workflow, parent=parent, order=order, **item)
            add(children, step)

    add(steps, None)
    return workflow


async def run_workflow(asgi, workflow_id: str, token: str, **body: Any):
    return await asgi.post(
        f"/api/workflows/{workflow_id}/runs", json={"message": "draft", **body}, headers=bearer(token)
    )


@pytest.fixture
def writer(openai_model):
    return AgentFactory(slug="writer", name="Writer", model=openai_model, instructions="You write.")


async def test_agent_and_function_steps_feed_each_other_in_order(asgi, token, scripted_model, writer):
    workflow = await sync_to_async(make_workflow)(
        "pipeline",
        [
            {"name": "write", "kind": "agent", "agent": writer},
            {"name": "shout", "kind": "function", "function": "shout"},
            {"name": "count", "kind": "function", "function": "count_runs"},
        ],
    )
    scripted_model.push_text("a short text")
    r = await run_workflow(asgi, workflow.slug, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "A SHORT TEXT (run 1, input 'draft')"
    assert body["status"] == "completed" and body["workflow_id"] == "pipeline"
    assert [(s["step_name"], s["step_index"], s["step_type"], s["content"]) for s in body["step_results"]] == [
        ("write", 0, "agent", "a short text"),
        ("shout", 1, "function", "A SHORT TEXT"),
        ("count", 2, "function", "A SHORT TEXT (run 1, input 'draft')"),
    ]
    assert body["session_state"] == {"shouted": 1, "runs": 1}
    assert scripted_model.requests[0]["messages"][-1] == {"role": "user", "content": "draft"}
    parent = await Run.objects.aget(pk=body["run_id"])
    assert parent.workflow_id == workflow.pk and parent.output == body["content"]
    child = await Run.objects.select_related("agent").aget(parent_run=parent)
    assert (child.agent.slug, child.input, child.output) == ("writer", "draft", "a short text")
    assert body["step_results"][0]["run_id"] == str(child.pk)


async def test_session_state_is_shared_across_steps_and_runs(asgi, token, scripted_model):
    workflow = await sync_to_async(make_workflow)(
        "counter",
        [
            {"name": "one", "kind": "function", "function": "count_runs"},
            {"name": "two", "kind": "function", "function": "count_runs"},
        ],
    )
    first = (await run_workflow(asgi, workflow.slug, token)).json()
    assert first["content"] == "draft (run 1, input 'draft') (run 2, input 'draft')"
    second = (await run_workflow(asgi, workflow.slug, token, session_id=first["session_id"])).json()
    assert second["session_state"] == {"runs": 4}
    session = await Session.objects.aget(pk=first["session_id"])
    assert session.state == {"runs": 4} and session.workflow_id == workflow.pk


async def test_condition_step_runs_its_steps_only_when_true(asgi, token, scripted_model):
    workflow = await sync_to_async(make_workflow)(
        "triage",
        [
            {
                "name": "if-urgent",
                "kind": "condition",
                "function": "output_contains",
                "args": {"text": "urgent"},
                "steps": [{"name": "shout", "kind": "function", "function": "shout"}],
            },
            {"name": "remember", "kind": "function", "function": "remember_output", "args": {"key": "final"}},
        ],
    )
    yes = await run_workflow(asgi, workflow.slug, token, message="urgent: fix it", stream=True)
    frames = parse_sse(yes.text)
    assert [(n, d.get("step_name"), d.get("step_index")) for n, d in frames] == [
        ("WorkflowStarted", None, None),
        ("StepStarted", "if-urgent", 0),
        ("StepStarted", "shout", [0, 0]),
        ("StepCompleted", "shout", [0, 0]),
        ("StepCompleted", "if-urgent", 0),
        ("StepStarted", "remember", 1),
        ("StepCompleted", "remember", 1),
        ("WorkflowCompleted", None, None),
    ]
    assert frames[4][1]["condition_result"] is True and frames[4][1]["content"] == "URGENT: FIX IT"
    assert frames[-1][1]["content"] == "URGENT: FIX IT"
    assert frames[-1][1]["session_state"] == {"shouted": 1, "final": "URGENT: FIX IT"}

    no = (await run_workflow(asgi, workflow.slug, token, message="whenever")).json()
    assert no["content"] == "whenever"
    assert [(s["step_name"], s.get("condition_result")) for s in no["step_results"]] == [
        ("if-urgent", False),
        ("remember", None),
    ]


async def test_parallel_step_runs_its_steps_at_the_same_time_and_joins_them(asgi, token, scripted_model):
    workflow = await sync_to_async(make_workflow)(
        "fanout",
        [
            {
                "name": "both",
                "kind": "parallel",
                "steps": [
                    {"name": "slow", "kind": "function", "function": "slow_echo", "args": {"seconds": 0.3, "tag": "s"}},
                    {"name": "fast", "kind": "function", "function": "slow_echo", "args": {"seconds": 0, "tag": "f"}},
                ],
            },
        ],
    )
    started = asyncio.get_running_loop().time()
    r = await run_workflow(asgi, workflow.slug, token, stream=True)
    frames = parse_sse(r.text)
    names = [(n, d.get("step_name")) for n, d in frames]
    # The fast branch finishes while the slow one still runs; the output keeps the steps' order.
    assert names.index(("StepCompleted", "fast")) < names.index(("StepCompleted", "slow"))
    assert [d["event_index"] for _, d in frames] == list(range(len(frames)))
    assert frames[-1][1]["content"] == (
        '## slow\n{"echo": "draft", "tag": "s"}\n\n## fast\n{"echo": "draft", "tag": "f"}'
    )
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_agent_and_team_steps_nest_their_runs_and_events(asgi, token, scripted_model, openai_model, writer):
    def build() -> Workflow:
        critic = AgentFactory(slug="critic", name="Critic", model=openai_model, instructions="You criticise.")
        team = TeamFactory(slug="crew", model=openai_model, mode="route")
        TeamMemberFactory(team=team, agent=critic)
        return make_workflow(
            "review",
            [
                {"name": "draft", "kind": "agent", "agent": writer},
                {"name": "review", "kind": "team", "team": team},
            ],
        )

    workflow = await sync_to_async(build)()
    scripted_model.push_text("the draft")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "critic"}, "id": "r"}])
    scripted_model.push_text("too short")
    r = await run_workflow(asgi, workflow.slug, token, stream=True)
    frames = parse_sse(r.text)
    names = [n for n, _ in frames]
    assert without_bookkeeping(names) == [
        "WorkflowStarted",
        "StepStarted",
        "RunStarted",
        "RunContent",
        "RunContent",
        "RunCompleted",
        "StepCompleted",
        "StepStarted",
        "TeamRunStarted",
        "TeamToolCallStarted",
        "RunStarted",
        "RunContent",
        "RunContent",
        "RunCompleted",
        "TeamToolCallCompleted",
        "TeamRunCompleted",
        "StepCompleted",
        "WorkflowCompleted",
    ]
    frames = [f for f in frames if f[0] not in BOOKKEEPING_EVENTS]
    workflow_run_id = frames[0][1]["run_id"]
    team_started = frames[8][1]
    assert team_started["parent_run_id"] == workflow_run_id and team_started["step_name"] == "review"
    critic_done = frames[13][1]
    assert critic_done["agent_id"] == "critic" and critic_done["parent_run_id"] == team_started["run_id"]
    assert critic_done["step_name"] == "review"  # labelled with the workflow step that ran it
    assert frames[-1][1]["content"] == "too short"
    # The team got the draft as its message, and routed it to the critic unchanged.
    assert scripted_model.requests[1]["messages"][-1] == {"role": "user", "content": "the draft"}
    assert scripted_model.requests[2]["messages"][-1] == {"role": "user", "content": "the draft"}
    tree = [
        (r.component_type, r.component_id, str(r.parent_run_id) if r.parent_run_id else None)
        async for r in Run.objects.filter(session_id=frames[0][1]["session_id"])
        .select_related("agent", "team", "workflow")
        .order_by("created_at")
    ]
    assert tree == [
        ("workflow", "review", None),
        ("agent", "writer", workflow_run_id),
        ("team", "crew", workflow_run_id),
        ("agent", "critic", team_started["run_id"]),
    ]


async def test_a_failing_step_ends_the_workflow_with_what_finished_kept(asgi, token, scripted_model, writer):
    workflow = await sync_to_async(make_workflow)(
        "fragile",
        [
            {"name": "write", "kind": "agent", "agent": writer},
            {"name": "count", "kind": "function", "function": "count_runs"},
            {"name": "explode", "kind": "function", "function": "explode"},
            {"name": "never", "kind": "function", "function": "shout"},
        ],
    )
    scripted_model.push_text("text")
    r = await run_workflow(asgi, workflow.slug, token)
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == "error" and body["failed_step"] == "explode"
    assert body["error"] == {
        "type": "step_function_error",
        "message": "Step 'explode' failed: Function explode raised RuntimeError: boom",
    }
    assert [(s["step_name"], s["status"]) for s in body["step_results"]] == [
        ("write", "completed"),
        ("count", "completed"),
        ("explode", "error"),
    ]
    run = await Run.objects.aget(pk=body["run_id"])
    assert run.status == "error" and run.output == "text (run 1, input 'draft')"
    session = await Session.objects.aget(pk=body["session_id"])
    assert session.state == {"runs": 1}  # state changes of the steps that ran are kept


async def test_a_failing_agent_step_takes_its_models_status(asgi, token, scripted_model, writer):
    workflow = await sync_to_async(make_workflow)("one", [{"name": "write", "kind": "agent", "agent": writer}])
    scripted_model.push_error(500, "down")
    r = await run_workflow(asgi, workflow.slug, token)
    assert r.status_code == 502
    body = r.json()
    assert body["error"]["type"] == "step_error" and body["failed_step"] == "write"
    child = await Run.objects.aget(parent_run_id=body["run_id"])
    assert child.status == "error" and child.error_type == "model_error"


async def test_workflows_are_listed_with_their_steps(asgi, token):
    await sync_to_async(make_workflow)(
        "listed",
        [
            {
                "name": "gate",
                "kind": "condition",
                "function": "state_flag",
                "args": {"key": "go"},
                "steps": [{"name": "inner", "kind": "function", "function": "shout"}],
            },
        ],
    )
    listed = (await asgi.get("/api/workflows/", headers=bearer(token))).json()
    assert listed[0]["workflow_id"] == "listed"
    steps = listed[0]["steps"]
    assert [(s["name"], s["kind"]) for s in steps] == [("gate", "condition")]
    assert [(s["name"], s["kind"]) for s in steps[0]["steps"]] == [("inner", "function")]
    assert (
        await asgi.post("/api/workflows/nope/runs", json={"message": "x"}, headers=bearer(token))
    ).status_code == 404


async def test_parallel_agent_steps_run_their_child_runs_at_the_same_time(asgi, token, scripted_model, openai_model):
    def build() -> Workflow:
        a = AgentFactory(slug="pro", model=openai_model, instructions="Argue for.")
        b = AgentFactory(slug="con", model=openai_model, instructions="Argue against.")
        return make_workflow(
            "debate",
            [
                {
                    "name": "sides",
                    "kind": "parallel",
                    "steps": [
                        {"name": "for", "kind": "agent", "agent": a},
                        {"name": "against", "kind": "agent", "agent": b},
                    ],
                },
                {"name": "sum", "kind": "function", "function": "join_outputs", "args": {"steps": ["for", "against"]}},
            ],
        )

    workflow = await sync_to_async(build)()
    # Both agents ask at once, in no fixed order: answer each by its instructions, slowly, so the
    # two model calls overlap.
    scripted_model.default_reply = lambda body: "yes" if "for" in body["messages"][0]["content"] else "no"
    scripted_model.latency = 0.3
    try:
        started = asyncio.get_running_loop().time()
        r = await run_workflow(asgi, workflow.slug, token)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        scripted_model.latency = 0.0
        scripted_model.default_reply = scripted_model._default_reply
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "## for\nyes\n\n## against\nno"
    children = {c.agent.slug: c async for c in Run.objects.filter(parent_run_id=body["run_id"]).select_related("agent")}
    assert {k: (c.status, c.output) for k, c in children.items()} == {
        "pro": ("completed", "yes"),
        "con": ("completed", "no"),
    }
    # Side by side, not one after the other: each started before the other finished.
    pro, con = children["pro"], children["con"]
    assert pro.created_at < con.finished_at and con.created_at < pro.finished_at, elapsed


def tally(run_context: RunContext, by: int = 1) -> int:
    """Add to the workflow's tally.

    Args:
        by: How much to add.
    """
    state = run_context.session_state
    state["tally"] = state.get("tally", 0) + by
    return state["tally"]


async def test_an_agent_steps_tools_share_the_workflow_state_with_later_steps(
    asgi, token, scripted_model, openai_model
):
    tool_registry.register(tally)
    try:

        def build() -> Workflow:
            counter = AgentFactory(slug="counter", model=openai_model, tools=["tally"])
            return make_workflow(
                "tallying",
                [
                    {"name": "start", "kind": "function", "function": "count_runs"},  # sets state["runs"]
                    {"name": "count", "kind": "agent", "agent": counter},
                    {"name": "after", "kind": "function", "function": "remember_output", "args": {"key": "seen"}},
                ],
            )

        workflow = await sync_to_async(build)()
        scripted_model.push_tool_calls([{"name": "tally", "arguments": {"by": 5}}])
        scripted_model.push_text("tallied")
        body = (await run_workflow(asgi, workflow.slug, token)).json()
    finally:
        tool_registry.unregister("tally")
    assert body["status"] == "completed", body
    assert body["session_state"] == {"runs": 1, "tally": 5, "seen": "tallied"}
    session = await Session.objects.aget(pk=body["session_id"])
    assert session.state == {"runs": 1, "tally": 5, "seen": "tallied"}
