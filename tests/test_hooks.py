"""Hooks: the registry and where hooks run, inline pre-/post-hooks in the engine (order, rewriting,
rejection, retries, timeouts, session state), background executions (recorded with the run, claimed
once, retried with backoff, never failing the run), the embedded worker, and the builtin hooks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents_app.hooks import HookContext, hook_registry
from agents_app.hooks.builtin import merge_topics, redact_text
from agents_app.hooks.errors import InputRejected
from agents_app.hooks.executions import hook_execution_run, hook_executions_retry, hook_executions_sweep
from agents_app.hooks.registry import Hook, HookRegistry
from agents_app.hooks.runner import runs_in_background
from agents_app.models import AgentHook, HookExecution
from agents_app.runs import run_agent
from sessions_app.models import Message, Run, Session
from tests.conftest import bearer, without_bookkeeping
from tests.factories import AgentFactory, attach_hooks


@pytest.fixture
def register() -> Iterator[Callable[..., Hook]]:
    """Register hooks for one test; they are unregistered afterwards."""
    names: list[str] = []

    def _register(fn: Callable[..., Any], **options: Any) -> Hook:
        item = hook_registry.register(fn, **options)
        names.append(item.name)
        return item

    yield _register
    for name in names:
        hook_registry.unregister(name)


def hook_settings(**changes: Any) -> Any:
    from django.conf import settings

    return override_settings(AGENTOS={**settings.AGENTOS, **changes})


def event_names(result: Any) -> list[str]:
    return [e.name for e in result.events]


# ---- the registry and the precedence of "background" ---------------------------------------------


def test_decorator_registers_plain_and_async_functions_with_their_options():
    registry = HookRegistry()
    registry._loaded = True

    def plain(ctx):
        """Plain hook.

        More text."""

    async def later(ctx):
        return None

    registry.register(plain)
    registry.register(later, name="later-one", background=True, retries=5, timeout=2.5, phases=["post"])
    assert registry.names() == ["later-one", "plain"]
    assert registry.names("pre") == ["plain"]
    first, second = registry.get("plain"), registry.get("later-one")
    assert (first.is_async, first.background, first.retries, first.timeout, first.description) == (
        False,
        False,
        2,
        30.0,
        "Plain hook.",
    )
    assert (second.is_async, second.background, second.max_attempts, second.phases) == (
        True,
        True,
        6,
        frozenset({"post"}),
    )


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"guardrail": True, "background": True}, "cannot run in the background"),
        ({"phases": ["during"]}, "phases must be"),
        ({"retries": -1}, "retries must be"),
        ({"timeout": 0}, "timeout must be"),
        ({"name": "no spaces"}, "must match"),
    ],
)
def test_decorator_refuses_impossible_options(options, error):
    with pytest.raises(ValueError, match=error):
        HookRegistry().register(lambda ctx: None, **{"name": "h", **options})


def test_a_hook_must_take_the_context():
    with pytest.raises(TypeError, match="exactly one argument"):
        HookRegistry().register(lambda: None, name="nothing")


@pytest.mark.parametrize(
    ("decorator", "agent_mode", "site", "guardrail", "expected"),
    [
        (False, None, "auto", False, False),  # the decorator's default
        (True, None, "auto", False, True),
        (False, "background", "auto", False, True),  # the agent overrides the decorator
        (True, "inline", "auto", False, False),
        (False, "inline", "always", False, True),  # the site overrides the agent
        (True, "background", "never", False, False),
        (False, "background", "always", True, False),  # guardrails are always inline
    ],
)
def test_where_a_hook_runs_follows_the_documented_precedence(decorator, agent_mode, site, guardrail, expected):
    item = Hook(
        name="h",
        fn=lambda ctx: None,
        is_async=False,
        description="",
        background=decorator,
        retries=0,
        timeout=1.0,
        phases=frozenset({"pre"}),
        guardrail=guardrail,
    )
    with hook_settings(HOOKS_BACKGROUND=site):
        assert runs_in_background(item, agent_mode or "default") is expected


@pytest.mark.django_db
def test_hook_rows_are_validated_against_the_registry_and_their_phases(offline_agent):
    from django.core.exceptions import ValidationError

    attach_hooks(offline_agent, pre=["redact_pii", "input_check", "track_topics"])
    attach_hooks(offline_agent, post=["redact_pii", "output_check"])
    for row in AgentHook.objects.filter(agent=offline_agent):
        row.full_clean()
    for phase, hook, mode, message in [
        ("pre", "output_check", "default", "Not registered as a hook that runs before the model"),
        ("post", "nope", "default", "nope"),
        ("post", "agentos_memory", "default", "Not registered"),  # ours: planned from the memory settings
        ("pre", "input_check", "background", "guardrail"),
        ("pre", "track_topics", "sometimes", "mode"),
    ]:
        row = AgentHook(agent=offline_agent, phase=phase, position=9, hook=hook, mode=mode)
        with pytest.raises(ValidationError, match=message):
            row.full_clean()
    # Once per phase, and one place per position: a form catches both, the database too.
    with pytest.raises(ValidationError, match="already exists"):
        AgentHook(agent=offline_agent, phase="pre", position=7, hook="redact_pii").full_clean()
    with pytest.raises(ValidationError, match="already exists"):
        AgentHook(agent=offline_agent, phase="post", position=0, hook="track_topics").full_clean()


# ---- inline hooks in the engine -----------------------------------------------------------------


@pytest.mark.django_db
def test_pre_hooks_run_in_order_each_seeing_the_last_rewrite_and_the_model_sees_the_result(
    register, agent, user, scripted_model
):
    seen: list[tuple[str, str]] = []

    def upper(ctx: HookContext) -> str:
        seen.append(("upper", ctx.input))
        return ctx.input.upper()

    async def exclaim(ctx: HookContext) -> str:
        seen.append(("exclaim", ctx.input))
        return ctx.input + "!"

    def observe(ctx: HookContext) -> None:
        seen.append(("observe", ctx.input))

    register(upper)
    register(exclaim)
    register(observe)
    attach_hooks(agent, pre=["upper", "exclaim", "observe"])
    agent.save()
    scripted_model.push_text("ok")
    result = run_agent(agent_id=agent.slug, user=user, message="hello")
    assert result.status == "completed"
    assert seen == [("upper", "hello"), ("exclaim", "HELLO"), ("observe", "HELLO!")]
    assert scripted_model.requests[-1]["messages"][-1] == {"role": "user", "content": "HELLO!"}
    assert without_bookkeeping(event_names(result)) == [
        "RunStarted",
        "PreHookStarted",
        "PreHookCompleted",
        "PreHookStarted",
        "PreHookCompleted",
        "PreHookStarted",
        "PreHookCompleted",
        "RunCompleted",
    ]
    completed = [e for e in result.events if e.name == "PreHookCompleted"]
    assert [(e.pre_hook_name, e.transformed) for e in completed] == [
        ("upper", True),
        ("exclaim", True),
        ("observe", False),
    ]
    # The run stores the input as the hooks left it: the original text is not kept anywhere.
    run = Run.objects.get(pk=result.run_id)
    assert run.input == "HELLO!"
    assert Message.objects.get(run=run, position=0).content == "HELLO!"
    assert "hello" not in json.dumps(run.events)


@pytest.mark.django_db
def test_rejected_input_is_a_typed_run_error_stored_on_the_run_and_the_model_is_never_called(
    register, agent, user, scripted_model
):
    def no_shouting(ctx: HookContext) -> None:
        if ctx.input.isupper():
            ctx.reject("Please do not shout.")

    calls: list[str] = []
    register(no_shouting, guardrail=True)
    register(lambda ctx: calls.append("after"), name="after_reject")
    attach_hooks(agent, pre=["no_shouting", "after_reject"])
    agent.save()
    result = run_agent(agent_id=agent.slug, user=user, message="HELLO")
    assert (result.status, result.error_type, result.error) == ("error", "input_rejected", "Please do not shout.")
    assert event_names(result) == ["RunStarted", "PreHookStarted", "RunError"]
    assert result.events[-1].content == "Please do not shout."
    assert scripted_model.requests == [] and calls == []
    run = Run.objects.get(pk=result.run_id)
    assert (run.status, run.error_type, run.error, run.output) == (
        "error",
        "input_rejected",
        "Please do not shout.",
        "",
    )
    assert not Message.objects.filter(run=run, role="assistant").exists()


@pytest.mark.django_db(transaction=True)
async def test_rejections_reach_the_api_client_with_their_status(register, asgi, agent, token, scripted_model):
    register(lambda ctx: ctx.reject("Off topic."), name="refuse_in", guardrail=True, phases=["pre"])
    register(lambda ctx: ctx.reject("Too rude."), name="refuse_out", guardrail=True, phases=["post"])
    await sync_to_async(attach_hooks)(agent, pre=["refuse_in"])
    await agent.asave()
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 422
    assert r.json()["error"] == {"type": "input_rejected", "message": "Off topic."}

    await sync_to_async(attach_hooks)(agent, pre=[], post=["refuse_out"])
    await agent.asave()
    scripted_model.push_text("a rude answer")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    from tests.test_api_runs import parse_sse

    frames = parse_sse(r.text)
    # Inline post-hooks hold the answer back: no delta of a refused answer ever reaches the client.
    assert without_bookkeeping([name for name, _ in frames]) == ["RunStarted", "PostHookStarted", "RunError"]
    assert frames[-1][1]["error_type"] == "output_rejected" and frames[-1][1]["content"] == "Too rude."
    run = await Run.objects.aget(pk=frames[0][1]["run_id"])
    assert (run.status, run.error_type, run.output) == ("error", "output_rejected", "")
    assert not await Message.objects.filter(run=run, role="assistant").aexists()

    scripted_model.push_text("another rude answer")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 502 and r.json()["error"]["type"] == "output_rejected"


@pytest.mark.django_db(transaction=True)
async def test_a_rejection_reaches_the_websocket_as_a_run_error(register, offline_agent, token):
    from tests.test_websocket import connect, until_terminal

    register(lambda ctx: ctx.reject("Not on this channel."), name="refuse_ws", guardrail=True, phases=["pre"])
    await sync_to_async(attach_hooks)(offline_agent, pre=["refuse_ws"])
    await offline_agent.asave()
    comm = await connect(offline_agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "hello"})
    frames = await until_terminal(comm)
    await comm.disconnect()
    assert [f["event"] for f in frames][-3:] == ["RunStarted", "PreHookStarted", "RunError"]
    assert (frames[-1]["error_type"], frames[-1]["content"]) == ("input_rejected", "Not on this channel.")


@pytest.mark.django_db
def test_post_hooks_rewrite_the_answer_in_order_and_the_stream_carries_only_the_result(
    register, agent, user, scripted_model
):
    from agents_app.engine.runner import RunHandle, execute, run_prepare

    register(lambda ctx: ctx.output.replace("secret", "*****"), name="mask", phases=["post"])
    register(lambda ctx: ctx.output + " (checked)", name="stamp", phases=["post"])
    attach_hooks(agent, post=["mask", "stamp"])
    agent.save()
    scripted_model.push_text("the secret is out")

    async def stream(handle: RunHandle) -> list[Any]:
        return [e async for e in execute(handle, stream=True)]

    from asgiref.sync import async_to_sync

    handle = run_prepare(agent_id=agent.slug, user=user, message="tell me")
    events = async_to_sync(stream)(handle)
    assert without_bookkeeping([e.name for e in events]) == [
        "RunStarted",
        "PostHookStarted",
        "PostHookCompleted",
        "PostHookStarted",
        "PostHookCompleted",
        "RunContent",
        "RunCompleted",
    ]
    assert (
        [e for e in events if e.name == "RunContent"][-1].content == events[-1].content == "the ***** is out (checked)"
    )
    run = Run.objects.get(pk=handle.run_id)
    assert run.output == "the ***** is out (checked)"
    assert Message.objects.get(run=run, role="assistant").content == "the ***** is out (checked)"


@pytest.mark.django_db
def test_post_hooks_on_structured_output_get_the_object_and_a_rewrite_is_revalidated(register, offline_agent, user):
    offline_agent.output_schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["city", "score"],
    }
    register(lambda ctx: {**ctx.output, "city": "Paris"}, name="to_paris", phases=["post"])
    register(lambda ctx: {**ctx.output, "score": "high"}, name="breaks_schema", phases=["post"])
    attach_hooks(offline_agent, post=["to_paris"])
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="somewhere nice")
    assert result.status == "completed" and result.content == {"city": "Paris", "score": 2}
    assert Run.objects.get(pk=result.run_id).output_json == {"city": "Paris", "score": 2}

    attach_hooks(offline_agent, post=["breaks_schema"])
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="again")
    assert result.error_type == "hook_error"
    assert "does not match the output schema" in result.error


@pytest.mark.django_db
def test_inline_failures_are_retried_then_fail_the_run_with_hook_error_or_timeout(register, offline_agent, user):
    attempts: list[int] = []

    def flaky(ctx: HookContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("database hiccup")

    register(flaky, retries=2)
    register(lambda ctx: 1 / 0, name="broken", retries=1)

    async def sleepy(ctx: HookContext) -> None:
        await asyncio.sleep(5)

    register(sleepy, timeout=0.05, retries=0)
    attach_hooks(offline_agent, pre=["flaky"])
    offline_agent.save()
    assert run_agent(agent_id=offline_agent.slug, user=user, message="hi").status == "completed"
    assert attempts == [1, 2, 3]

    attach_hooks(offline_agent, pre=["broken"])
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    # The client reads the hook and the exception type, not the exception's text.
    assert (result.error_type, result.error) == ("hook_error", "The broken hook failed (ZeroDivisionError).")

    attach_hooks(offline_agent, pre=["sleepy"])
    offline_agent.save()
    started = time.perf_counter()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    assert time.perf_counter() - started < 2
    assert (result.error_type, result.error) == ("hook_timeout", "The sleepy hook did not finish within 0.05 s.")


@pytest.mark.django_db(transaction=True)
async def test_hook_errors_and_timeouts_have_their_status_codes(register, asgi, offline_agent, token):
    async def sleepy(ctx: HookContext) -> None:
        await asyncio.sleep(5)

    register(lambda ctx: 1 / 0, name="broken", retries=0)
    register(sleepy, timeout=0.05, retries=0)
    for hook_name, status in (("broken", 500), ("sleepy", 504)):
        await sync_to_async(attach_hooks)(offline_agent, pre=[hook_name])
        r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
        assert r.status_code == status, r.text


@pytest.mark.django_db
def test_an_unregistered_hook_fails_the_run_before_the_model(offline_agent, user, scripted_model):
    # Stored when it was registered; its module is gone now (rows skip validation when created directly).
    AgentHook.objects.create(agent=offline_agent, phase="pre", position=0, hook="vanished")
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    assert result.error_type == "hook_error" and "vanished" in result.error
    assert event_names(result) == ["RunStarted", "RunError"]


@pytest.mark.django_db
def test_inline_hooks_update_the_session_state_merged_with_the_run(register, offline_agent, user):
    def count(ctx: HookContext) -> None:
        ctx.session_state["runs"] = ctx.session_state.get("runs", 0) + 1
        ctx.session_state.pop("drop_me", None)

    def strike_then_reject(ctx: HookContext) -> None:
        ctx.session_state["strikes"] = ctx.session_state.get("strikes", 0) + 1
        if "bad" in ctx.input:
            ctx.reject("No.")

    register(count)
    register(strike_then_reject)
    attach_hooks(offline_agent, pre=["count", "strike_then_reject"])
    offline_agent.save()
    first = run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    session = Session.objects.get(pk=first.session_id)
    session.state = {**session.state, "drop_me": 1, "other": "kept"}
    session.save()
    second = run_agent(agent_id=offline_agent.slug, user=user, message="bad words", session_id=first.session_id)
    assert second.error_type == "input_rejected"
    # A rejecting hook's own state changes are kept (a strike count); other keys are untouched.
    assert Session.objects.get(pk=first.session_id).state == {"runs": 2, "strikes": 2, "other": "kept"}


@pytest.mark.django_db
def test_agents_without_hooks_pay_nothing_and_a_background_hook_adds_one_insert(register, offline_agent, user):
    register(lambda ctx: None, name="later", background=True)
    first = run_agent(agent_id=offline_agent.slug, user=user, message="start")

    def queries(message: str) -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            run_agent(agent_id=offline_agent.slug, user=user, message=message, session_id=first.session_id)
        return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]

    plain = queries("one")
    attach_hooks(offline_agent, post=["later"])
    offline_agent.save()
    queries("the agent is cached again")
    with_hook = queries("two")
    extra = [sql for sql in with_hook if "agents_app_hookexecution" in sql]
    assert len(with_hook) == len(plain) + 1 and len(extra) == 1 and extra[0].startswith("INSERT")


# ---- background hooks: recorded with the run, claimed once, retried, never failing the run ----------


@pytest.fixture
def background_run(register, offline_agent, user, django_capture_on_commit_callbacks):
    """A run of an agent with one background post-hook (whose behaviour a test sets), with the
    execution recorded and its publication captured (not sent)."""
    behaviour: dict[str, Any] = {"fn": lambda ctx: None}
    calls: list[HookContext] = []

    def later(ctx: HookContext) -> Any:
        calls.append(ctx)
        return behaviour["fn"](ctx)

    register(later, background=True, retries=2, timeout=0.5)
    attach_hooks(offline_agent, pre=[], post=["later"])
    offline_agent.save()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = run_agent(agent_id=offline_agent.slug, user=user, message="hello there")
    execution = HookExecution.objects.get()
    return {"result": result, "execution": execution, "calls": calls, "behaviour": behaviour, "callbacks": callbacks}


@pytest.mark.django_db
def test_a_background_hook_is_recorded_and_published_only_after_commit(background_run):
    execution, result = background_run["execution"], background_run["result"]
    assert result.status == "completed" and background_run["calls"] == []
    assert (execution.hook_name, execution.phase, execution.status, execution.attempts, execution.max_attempts) == (
        "later",
        "post",
        "queued",
        0,
        3,
    )
    assert str(execution.run_id) == result.run_id
    assert len(background_run["callbacks"]) == 1  # the publish, registered with transaction.on_commit
    assert "PostHookStarted" not in event_names(result)  # background hooks emit no stream events


@pytest.mark.django_db
def test_a_background_execution_runs_once_and_a_redelivery_does_nothing(background_run):
    def remember(ctx: HookContext) -> None:
        ctx.session_state["seen"] = ctx.session_state.get("seen", 0) + 1
        ctx.session_state["output"] = ctx.output

    background_run["behaviour"]["fn"] = remember
    execution = background_run["execution"]
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"  # redelivered: nothing to do
    assert len(background_run["calls"]) == 1
    ctx = background_run["calls"][0]
    assert (ctx.background, ctx.attempt, ctx.phase, ctx.input, ctx.output_type) == (
        True,
        1,
        "post",
        "hello there",
        "str",
    )
    execution.refresh_from_db()
    assert (execution.status, execution.attempts, execution.error) == ("succeeded", 1, "")
    assert execution.duration is not None and execution.finished_at is not None
    state = Session.objects.get(pk=background_run["result"].session_id).state
    assert state == {"seen": 1, "output": background_run["result"].content}


@pytest.mark.django_db
def test_a_failing_background_hook_is_retried_with_backoff_then_recorded_failed(background_run):
    def fail(ctx: HookContext) -> None:
        ctx.session_state["partial"] = True  # discarded: the attempt failed
        raise RuntimeError("service down")

    background_run["behaviour"]["fn"] = fail
    execution = background_run["execution"]
    with hook_settings(HOOKS_RETRY_BACKOFF_SECONDS=10.0):
        first = hook_execution_run(execution_id=execution.pk)
    assert first.status == "queued" and 8 <= first.retry_in <= 12
    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("queued", 1)
    assert execution.error == "The later hook failed (RuntimeError)."
    # Delivered again before the backoff has passed: it waits (asks to be delivered later).
    early = hook_execution_run(execution_id=execution.pk)
    assert early.status == "queued" and early.retry_in > 5 and len(background_run["calls"]) == 1
    for expected in ("queued", "failed"):
        HookExecution.objects.filter(pk=execution.pk).update(next_attempt_at=timezone.now())
        assert hook_execution_run(execution_id=execution.pk).status == expected
    execution.refresh_from_db()
    assert (execution.status, execution.attempts, len(background_run["calls"])) == ("failed", 3, 3)
    assert hook_execution_run(execution_id=execution.pk).status == "failed"  # final
    assert Run.objects.get(pk=execution.run_id).status == "completed"  # the run never fails
    assert Session.objects.get(pk=background_run["result"].session_id).state == {}
    # An operator can give it another go from the admin.
    assert hook_executions_retry(executions=[execution]) == 1
    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("queued", 0)


@pytest.mark.django_db
def test_a_background_rejection_or_timeout_is_recorded(background_run):
    background_run["behaviour"]["fn"] = lambda ctx: ctx.reject("not good")
    execution = background_run["execution"]
    assert hook_execution_run(execution_id=execution.pk).status == "failed"  # a verdict is not retried
    execution.refresh_from_db()
    assert execution.attempts == 1 and execution.error.startswith("Rejected: not good")

    HookExecution.objects.filter(pk=execution.pk).update(status="queued", attempts=0)
    background_run["behaviour"]["fn"] = lambda ctx: time.sleep(1)
    delivery = hook_execution_run(execution_id=execution.pk)
    assert delivery.status == "queued"
    execution.refresh_from_db()
    assert execution.error == "The later hook did not finish within 0.5 s."


@pytest.mark.django_db
def test_a_claim_held_by_a_live_worker_is_left_alone_and_a_dead_ones_is_taken_over(background_run):
    execution = background_run["execution"]
    now = timezone.now()
    HookExecution.objects.filter(pk=execution.pk).update(
        status="running", attempts=1, lease_expires_at=now + timedelta(seconds=30)
    )
    delivery = hook_execution_run(execution_id=execution.pk)  # a duplicate while the first attempt runs
    assert delivery.status == "running" and 29 < delivery.retry_in <= 31
    assert background_run["calls"] == []
    # The worker died: its lease expires and the next delivery runs attempt 2.
    HookExecution.objects.filter(pk=execution.pk).update(lease_expires_at=now - timedelta(seconds=1))
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    execution.refresh_from_db()
    assert (execution.attempts, [c.attempt for c in background_run["calls"]]) == (2, [2])
    # The last allowed attempt's worker died: recorded as failed, the hook is not run again.
    HookExecution.objects.filter(pk=execution.pk).update(
        status="running", attempts=3, lease_expires_at=now - timedelta(seconds=1)
    )
    assert hook_execution_run(execution_id=execution.pk).status == "failed"
    execution.refresh_from_db()
    assert "never finished" in execution.error and len(background_run["calls"]) == 1


@pytest.mark.django_db
def test_the_sweep_republishes_only_stalled_executions(background_run, monkeypatch):
    published: list[list[tuple[int, str]]] = []
    monkeypatch.setattr(
        "agents_app.hooks.executions.hook_executions_publish", lambda *, executions: published.append(executions) or 0
    )
    execution = background_run["execution"]
    assert hook_executions_sweep() == 0 and published == []  # just queued: its message is on its way
    old = timezone.now() - timedelta(hours=1)
    HookExecution.objects.filter(pk=execution.pk).update(updated_at=old)
    hook_executions_sweep()
    assert published == [[(execution.pk, "later", 0.5)]]  # with the timeout planned for the run
    hook_executions_sweep()  # the sweep bumped updated_at: not published again at once
    assert len(published) == 1
    # A claim whose worker died: taken up as soon as its lease has expired, not HOOKS_SWEEP_AFTER_SECONDS later.
    now = timezone.now()
    HookExecution.objects.filter(pk=execution.pk).update(
        status="running", attempts=1, lease_expires_at=now + timedelta(seconds=5), updated_at=now - timedelta(minutes=1)
    )
    hook_executions_sweep()
    assert len(published) == 1  # its lease still runs: its worker may be alive
    HookExecution.objects.filter(pk=execution.pk).update(lease_expires_at=now - timedelta(seconds=1))
    hook_executions_sweep()
    assert published[-1] == [(execution.pk, "later", 0.5)] and len(published) == 2
    hook_executions_sweep()  # re-published just now: not again until the lease grace has passed
    assert len(published) == 2


@pytest.mark.django_db
def test_background_pre_hooks_are_not_queued_for_a_rejected_input(register, offline_agent, user):
    register(lambda ctx: None, name="later_pre", background=True, phases=["pre"])
    register(lambda ctx: ctx.reject("no"), name="gate", guardrail=True, phases=["pre"])
    attach_hooks(offline_agent, pre=["later_pre", "gate"])
    offline_agent.save()
    assert run_agent(agent_id=offline_agent.slug, user=user, message="hi").error_type == "input_rejected"
    assert not HookExecution.objects.exists()
    attach_hooks(offline_agent, pre=["later_pre"])
    offline_agent.save()
    run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    assert list(HookExecution.objects.values_list("hook_name", "phase")) == [("later_pre", "pre")]


@pytest.mark.django_db(transaction=True)
async def test_a_slow_background_hook_does_not_delay_the_response(register, asgi, offline_agent, token):
    """Embedded mode (memory:// broker): the worker thread in this process runs the hook after the
    response, off the request path."""
    threads: list[str] = []

    def slow(ctx: HookContext) -> None:
        threads.append(threading.current_thread().name)
        time.sleep(2.5)
        ctx.session_state["slow_done"] = True

    register(slow, background=True, timeout=10, retries=0)
    await sync_to_async(attach_hooks)(offline_agent, post=["slow"])
    await offline_agent.asave()
    started = time.perf_counter()
    r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    elapsed = time.perf_counter() - started
    assert r.status_code == 200 and elapsed < 1.5, elapsed  # the hook alone takes 2.5 s
    execution = await HookExecution.objects.aget(run_id=r.json()["run_id"])
    assert execution.status in ("queued", "running")
    for _ in range(150):
        await execution.arefresh_from_db()
        if execution.status == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert execution.status == "succeeded" and execution.attempts == 1 and execution.duration >= 2.5
    session = await Session.objects.aget(pk=r.json()["session_id"])
    assert session.state == {"slow_done": True}
    assert threads and threads[0] != threading.main_thread().name


# ---- builtin hooks ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_input_check_rejects_with_the_judges_concerns_and_recommendations(agent, user, scripted_model):
    attach_hooks(agent, pre=["input_check"])
    agent.save()
    scripted_model.push_json(
        {
            "is_relevant": False,
            "is_detailed_enough": True,
            "is_safe": True,
            "concerns": ["The question is about cooking."],
            "recommendations": ["Ask about your account."],
        }
    )
    result = run_agent(agent_id=agent.slug, user=user, message="how do I bake bread?")
    assert result.error_type == "input_rejected"
    assert result.error == (
        "Your message was not accepted: it is not related to what this assistant does. "
        "Concerns: The question is about cooking. Recommendations: Ask about your account."
    )
    judge_request = scripted_model.requests[0]
    assert judge_request["response_format"]["type"] == "json_schema"
    assert judge_request["response_format"]["json_schema"]["name"] == "input_check"
    assert "how do I bake bread?" in judge_request["messages"][-1]["content"]
    assert len(scripted_model.requests) == 1  # the agent's model was never asked

    scripted_model.push_json(
        {"is_relevant": True, "is_detailed_enough": True, "is_safe": True, "concerns": [], "recommendations": []}
    )
    scripted_model.push_text("Here is your balance.")
    assert run_agent(agent_id=agent.slug, user=user, message="what is my balance?").content == "Here is your balance."


@pytest.mark.django_db
def test_output_check_withholds_an_answer_the_judge_rejects(agent, user, scripted_model):
    attach_hooks(agent, post=["output_check"])
    agent.save()
    scripted_model.push_text("whatever, figure it out yourself")
    scripted_model.push_json(
        {
            "is_complete": False,
            "is_professional": False,
            "is_safe": True,
            "concerns": ["Dismissive tone."],
            "confidence": 0.9,
        }
    )
    result = run_agent(agent_id=agent.slug, user=user, message="help me")
    assert result.error_type == "output_rejected"
    assert result.error == (
        "The answer was withheld: it is incomplete; it is not professional. Concerns: Dismissive tone. "
        "(Reviewer confidence 0.90.)"
    )
    assert "whatever, figure it out yourself" in scripted_model.requests[-1]["messages"][-1]["content"]
    assert Run.objects.get(pk=result.run_id).output == ""


@pytest.mark.django_db
def test_a_judge_that_answers_garbage_fails_closed(agent, user, scripted_model):
    attach_hooks(agent, pre=["input_check"])
    agent.save()
    for _ in range(2):  # the answer, and the one corrected retry
        scripted_model.push_text("I think it is fine!")
    result = run_agent(agent_id=agent.slug, user=user, message="hi")
    # A judge that misses its schema twice ends the run as the model's failure (a 502), not a hook
    # error (a 500), and is not retried again as a failing hook: two judge calls, no agent call.
    assert result.error_type == "output_invalid" and "not valid JSON" in result.error
    assert len(scripted_model.requests) == 2
    retry = scripted_model.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is fine!"}
    assert retry[-1]["role"] == "user" and "could not be used" in retry[-1]["content"]


@pytest.mark.django_db
def test_model_judged_hooks_work_with_the_offline_model(offline_agent, user):
    attach_hooks(offline_agent, pre=["input_check"])
    attach_hooks(offline_agent, post=["output_check"])
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hello")
    assert result.status == "completed"
    assert event_names(result)[:3] == ["RunStarted", "PreHookStarted", "PreHookCompleted"]


@pytest.mark.django_db
def test_the_judge_model_can_be_another_model_config(agent, offline_agent, user, scripted_model):
    attach_hooks(agent, pre=["input_check"])
    agent.save()
    scripted_model.push_text("answer")
    with hook_settings(HOOKS_JUDGE_MODEL=offline_agent.model.name):
        result = run_agent(agent_id=agent.slug, user=user, message="hello")
    assert result.content == "answer" and len(scripted_model.requests) == 1  # the offline model judged
    with hook_settings(HOOKS_JUDGE_MODEL="missing"):
        assert run_agent(agent_id=agent.slug, user=user, message="hello").error_type == "hook_error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ada@example.com now", "mail [REDACTED:email] now"),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [REDACTED:phone] or [REDACTED:phone]"),
        ("card 4111 1111 1111 1111, not 1234 5678 9012 3456", "card [REDACTED:card], not 1234 5678 9012 3456"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx12345", "key [REDACTED:api_key]"),
        ("AKIAIOSFODNN7EXAMPLE and ghp_" + "a" * 36, "[REDACTED:aws_access_key] and [REDACTED:github_token]"),
        ("password: hunter22 api_key='abcd1234'", "password: [REDACTED:secret] api_key='[REDACTED:secret]'"),
        ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer [REDACTED:bearer_token]"),
        ("ssn 123-45-6789, iban DE89 3704 0044 0532 0130 00", "ssn [REDACTED:ssn], iban [REDACTED:iban]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "[REDACTED:private_key]"),
        ("on 2024-01-01 I paid 1234567 for order 42", "on 2024-01-01 I paid 1234567 for order 42"),
    ],
)
def test_redaction_patterns(text, expected):
    assert redact_text(text)[0] == expected


@pytest.mark.django_db
def test_redact_pii_keeps_secrets_from_the_model_the_database_and_the_client(agent, user, scripted_model):
    attach_hooks(agent, pre=["redact_pii"])
    attach_hooks(agent, post=["redact_pii"])
    agent.save()
    scripted_model.push_text("Sure, I will email bob@example.org.")
    result = run_agent(agent_id=agent.slug, user=user, message="my key is sk-abcdefghijklmnopqrstuvwxyz0123 ok?")
    assert scripted_model.requests[-1]["messages"][-1]["content"] == "my key is [REDACTED:api_key] ok?"
    assert result.content == "Sure, I will email [REDACTED:email]."
    run = Run.objects.get(pk=result.run_id)
    stored = json.dumps([run.input, run.output, run.events, list(Message.objects.filter(run=run).values("content"))])
    assert "sk-abcdefghij" not in stored and "bob@example.org" not in stored


def test_topics_are_merged_without_duplicates_and_bounded():
    assert merge_topics(["billing"], ["Billing", " Refund policy. ", ""], 10) == ["billing", "refund policy"]
    assert merge_topics(None, ["a", "b", "c"], 2) == ["b", "c"]


@pytest.mark.django_db
def test_track_topics_keeps_the_topics_in_the_session_state(
    agent, user, scripted_model, django_capture_on_commit_callbacks
):
    attach_hooks(agent, pre=["track_topics"])  # background by default
    agent.save()
    scripted_model.push_text("An answer about invoices.")
    with django_capture_on_commit_callbacks(execute=False):
        result = run_agent(agent_id=agent.slug, user=user, message="my invoice is wrong")
    execution = HookExecution.objects.get()
    assert (execution.hook_name, execution.phase) == ("track_topics", "pre")
    scripted_model.push_json({"topics": ["Invoices", "billing errors"]})
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    assert scripted_model.requests[-1]["messages"][-1]["content"] == "my invoice is wrong"
    assert Session.objects.get(pk=result.session_id).state == {"topics": ["invoices", "billing errors"]}


def test_input_rejected_is_the_phase_specific_error():
    assert InputRejected("x").error_type == "input_rejected"


# ---- the admin ------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Any, staff_user: Any) -> Any:
    client.force_login(staff_user)
    return client


def hook_rows_post(rows: list[dict[str, Any]], *, initial: int = 0) -> dict[str, Any]:
    """The hook inline of an agent's admin form: management data, then one form per row."""
    data: dict[str, Any] = {
        "hooks-TOTAL_FORMS": str(len(rows)),
        "hooks-INITIAL_FORMS": str(initial),
        "hooks-MIN_NUM_FORMS": "0",
        "hooks-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        defaults = {"mode": "default", "max_retries": "", "timeout_seconds": ""}
        data.update({f"hooks-{index}-{key}": value for key, value in {**defaults, **row}.items()})
    return data


@pytest.mark.django_db
def test_admin_edits_hook_rows_inline_round_trip(admin_client, offline_agent, user):
    from django.urls import reverse

    from tests.test_admin import agent_post

    url = reverse("admin:agents_app_agent_change", args=[offline_agent.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="hooks-TOTAL_FORMS"' in page and 'name="hooks-__prefix__-hook"' in page
    assert "redact_pii: " in page and "(after the model only) [guardrail: always inline]" in page
    assert '<option value="agentos_memory"' not in page  # ours are not attachable
    base = agent_post(offline_agent.model, name=offline_agent.name, slug=offline_agent.slug)
    rows = [
        {"phase": "pre", "position": "2", "hook": "redact_pii"},
        {"phase": "pre", "position": "1", "hook": "input_check"},
        {"phase": "pre", "position": "3", "hook": "track_topics", "mode": "inline", "max_retries": "0"},
        {"phase": "post", "position": "1", "hook": "output_check", "timeout_seconds": "12.5"},
    ]
    response = admin_client.post(url, {**base, **hook_rows_post(rows)})
    assert response.status_code == 302, response.content.decode()[:3000]
    stored = list(
        AgentHook.objects.filter(agent=offline_agent).values_list(
            "phase", "position", "hook", "mode", "max_retries", "timeout_seconds"
        )
    )
    assert stored == [
        ("pre", 1, "input_check", "default", None, None),
        ("pre", 2, "redact_pii", "default", None, None),
        ("pre", 3, "track_topics", "inline", 0, None),
        ("post", 1, "output_check", "default", None, 12.5),
    ]
    # The page shows them back, and a run plans them in that order, with the row's settings.
    page = admin_client.get(url).content.decode()
    assert 'name="hooks-INITIAL_FORMS" value="4"' in page and 'value="12.5"' in page
    from agents_app.hooks.runner import plan_hooks
    from agents_app.selectors import agent_get_active, agent_hook_rows

    planned = plan_hooks(agent_hook_rows(agent_get_active(agent_id=offline_agent.slug)))
    assert [(p.phase, p.position, p.name, p.background) for p in planned] == [
        ("pre", 0, "input_check", False),
        ("pre", 1, "redact_pii", False),
        ("pre", 2, "track_topics", False),
        ("post", 0, "output_check", False),
    ]
    assert (planned[2].hook.retries, planned[3].hook.timeout, planned[0].hook.retries) == (0, 12.5, 2)

    # Swapping two rows' order and hooks, and deleting one, in one save (the unique constraints
    # would trip halfway without parking the rows first).
    ids = {row.hook: row.pk for row in AgentHook.objects.filter(agent=offline_agent)}
    edited = [
        {"id": ids["input_check"], "phase": "pre", "position": "2", "hook": "input_check"},
        {"id": ids["redact_pii"], "phase": "pre", "position": "1", "hook": "redact_pii"},
        {"id": ids["track_topics"], "phase": "pre", "position": "3", "hook": "track_topics", "DELETE": "on"},
        {"id": ids["output_check"], "phase": "post", "position": "1", "hook": "redact_pii"},
    ]
    response = admin_client.post(url, {**base, **hook_rows_post(edited, initial=4)})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(AgentHook.objects.filter(agent=offline_agent).values_list("phase", "position", "hook")) == [
        ("pre", 1, "redact_pii"),
        ("pre", 2, "input_check"),
        ("post", 1, "redact_pii"),
    ]

    # Refused with the API's words: wrong phase, a guardrail in the background, a hook twice.
    for bad_rows, message in [
        ([{"phase": "pre", "position": "1", "hook": "output_check"}], "Not registered as a hook that runs before"),
        ([{"phase": "pre", "position": "1", "hook": "input_check", "mode": "background"}], "is a guardrail"),
        (
            [
                {"phase": "post", "position": "1", "hook": "redact_pii"},
                {"phase": "post", "position": "2", "hook": "redact_pii"},
            ],
            "A hook can be attached only once after the model: redact_pii.",
        ),
    ]:
        AgentHook.objects.filter(agent=offline_agent).delete()
        bad = admin_client.post(url, {**base, **hook_rows_post(bad_rows)})
        assert bad.status_code == 200 and message in bad.content.decode(), message
        assert not AgentHook.objects.filter(agent=offline_agent).exists()


@pytest.mark.django_db
def test_admin_warns_about_unregistered_hooks_and_refuses_to_keep_them(admin_client, offline_agent):
    from django.urls import reverse

    from tests.test_admin import agent_post

    row = AgentHook.objects.create(agent=offline_agent, phase="pre", position=0, hook="vanished")
    url = reverse("admin:agents_app_agent_change", args=[offline_agent.pk])
    page = admin_client.get(url).content.decode()
    assert "This agent has hooks that no code registers: vanished." in page
    assert "⚠ vanished: not registered in code (delete this row to save)" in page
    base = agent_post(offline_agent.model, name=offline_agent.name, slug=offline_agent.slug)
    kept = hook_rows_post([{"id": row.pk, "phase": "pre", "position": "0", "hook": "vanished"}], initial=1)
    assert admin_client.post(url, {**base, **kept}).status_code == 200
    dropped = {**kept, "hooks-0-DELETE": "on"}
    assert admin_client.post(url, {**base, **dropped}).status_code == 302
    assert not AgentHook.objects.filter(agent=offline_agent).exists()


@pytest.mark.django_db
def test_admin_lists_hook_executions_and_retries_failed_ones(admin_client, background_run):
    from django.urls import reverse

    execution = background_run["execution"]
    HookExecution.objects.filter(pk=execution.pk).update(status="failed", attempts=3, error="boom")
    changelist = reverse("admin:agents_app_hookexecution_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "later" in page and "3 / 3" in page and "boom" in page
    assert admin_client.get(reverse("admin:agents_app_hookexecution_change", args=[execution.pk])).status_code == 200
    response = admin_client.post(changelist, {"action": "retry_failed", "_selected_action": [execution.pk]})
    assert response.status_code == 302
    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("queued", 0)


def test_agents_without_any_hooks_build_no_hook_runner():
    from agents_app.engine.runner import RunHandle
    from agents_app.hooks.runner import RunHooks

    handle = RunHandle(
        agent=AgentFactory.build(),
        user_id=1,
        run_id=None,
        session_id=None,
        message="x",
        history=[],
        created_at=timezone.now(),
        session_created=True,
    )
    assert RunHooks.for_run(handle) is None


def test_a_locked_database_makes_the_hook_task_deliver_again_not_give_up(monkeypatch):
    """SQLite answers "database table is locked" to a writer while another connection reads: the
    task asks Celery to deliver it again shortly (the claim is idempotent)."""
    from celery.exceptions import Retry
    from django.db import OperationalError

    from agents_app import tasks

    calls: list[int] = []

    def locked(*, execution_id: int) -> Any:
        calls.append(execution_id)
        raise OperationalError("database table is locked: agents_app_hookexecution")

    monkeypatch.setattr(tasks, "hook_execution_run", locked)
    retried: list[dict[str, Any]] = []

    def fake_retry(**kwargs: Any) -> Retry:
        retried.append(kwargs)
        return Retry("again", when=kwargs["countdown"])

    monkeypatch.setattr(tasks.hook_execute_task, "retry", fake_retry)
    with pytest.raises(Retry):
        tasks.hook_execute_task.run(7)
    assert calls == [7] and retried[0]["countdown"] == 0.2
    assert isinstance(retried[0]["exc"], OperationalError)


@pytest.mark.django_db
def test_hook_rows_are_cached_with_the_agent_and_the_cache_follows_their_changes(offline_agent):
    from agents_app.hooks.runner import plan_hooks
    from agents_app.selectors import agent_get_active, agent_hook_rows

    def planned() -> tuple[list[tuple[str, bool]], int]:
        with CaptureQueriesContext(connection) as ctx:
            plan = plan_hooks(agent_hook_rows(agent_get_active(agent_id=offline_agent.slug)))
        return [(p.name, p.background) for p in plan], len(ctx.captured_queries)

    assert planned() == ([], 4)  # the agent with its models, then its hook rows, fallbacks and tool requirements: once
    assert planned() == ([], 0)  # from the cache
    row = AgentHook.objects.create(agent=offline_agent, phase="pre", position=0, hook="track_topics")
    assert planned() == ([("track_topics", True)], 4)
    assert planned() == ([("track_topics", True)], 0)
    row.mode = "inline"
    row.save()
    assert planned() == ([("track_topics", False)], 4)
    row.delete()
    assert planned() == ([], 4)
    attach_hooks(offline_agent, post=["output_check"])  # the API's bulk replacement clears it too
    assert planned() == ([("output_check", False)], 4)
