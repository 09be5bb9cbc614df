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
from agents_app.models import Agent, HookExecution
from agents_app.runs import run_agent
from sessions_app.models import Message, Run, Session
from tests.conftest import bearer
from tests.factories import AgentFactory


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
    agent = Agent(hook_modes={"h": agent_mode} if agent_mode else {})
    with hook_settings(HOOKS_BACKGROUND=site):
        assert runs_in_background(item, agent) is expected


@pytest.mark.django_db
def test_agent_validation_knows_the_registered_hooks_and_their_phases(offline_agent):
    from django.core.exceptions import ValidationError

    offline_agent.pre_hooks = ["redact_pii", "input_check", "track_topics"]
    offline_agent.post_hooks = ["redact_pii", "output_check"]
    offline_agent.hook_modes = {"track_topics": "inline"}
    offline_agent.full_clean()
    for field, value, message in [
        ("pre_hooks", ["output_check"], "Not registered as a hook that runs before the model"),
        ("post_hooks", ["nope"], "nope"),
        ("pre_hooks", ["redact_pii", "redact_pii"], "only once"),
        ("hook_modes", {"input_check": "background"}, "guardrail"),
        ("hook_modes", {"track_topics": "sometimes"}, "inline"),
    ]:
        agent = Agent.objects.get(pk=offline_agent.pk)
        setattr(agent, field, value)
        with pytest.raises(ValidationError, match=message):
            agent.full_clean()


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
    agent.pre_hooks = ["upper", "exclaim", "observe"]
    agent.save()
    scripted_model.push_text("ok")
    result = run_agent(agent_id=agent.slug, user=user, message="hello")
    assert result.status == "completed"
    assert seen == [("upper", "hello"), ("exclaim", "HELLO"), ("observe", "HELLO!")]
    assert scripted_model.requests[-1]["messages"][-1] == {"role": "user", "content": "HELLO!"}
    assert event_names(result) == [
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
    agent.pre_hooks = ["no_shouting", "after_reject"]
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
    agent.pre_hooks = ["refuse_in"]
    await agent.asave()
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 422
    assert r.json()["error"] == {"type": "input_rejected", "message": "Off topic."}

    agent.pre_hooks, agent.post_hooks = [], ["refuse_out"]
    await agent.asave()
    scripted_model.push_text("a rude answer")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    from tests.test_api_runs import parse_sse

    frames = parse_sse(r.text)
    # Inline post-hooks hold the answer back: no delta of a refused answer ever reaches the client.
    assert [name for name, _ in frames] == ["RunStarted", "PostHookStarted", "RunError"]
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
    offline_agent.pre_hooks = ["refuse_ws"]
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
    agent.post_hooks = ["mask", "stamp"]
    agent.save()
    scripted_model.push_text("the secret is out")

    async def stream(handle: RunHandle) -> list[Any]:
        return [e async for e in execute(handle, stream=True)]

    from asgiref.sync import async_to_sync

    handle = run_prepare(agent_id=agent.slug, user=user, message="tell me")
    events = async_to_sync(stream)(handle)
    assert [e.name for e in events] == [
        "RunStarted",
        "PostHookStarted",
        "PostHookCompleted",
        "PostHookStarted",
        "PostHookCompleted",
        "RunContent",
        "RunCompleted",
    ]
    assert events[-2].content == events[-1].content == "the ***** is out (checked)"
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
    offline_agent.post_hooks = ["to_paris"]
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="somewhere nice")
    assert result.status == "completed" and result.content == {"city": "Paris", "score": 2}
    assert Run.objects.get(pk=result.run_id).output_json == {"city": "Paris", "score": 2}

    offline_agent.post_hooks = ["breaks_schema"]
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
    offline_agent.pre_hooks = ["flaky"]
    offline_agent.save()
    assert run_agent(agent_id=offline_agent.slug, user=user, message="hi").status == "completed"
    assert attempts == [1, 2, 3]

    offline_agent.pre_hooks = ["broken"]
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    # The client reads the hook and the exception type, not the exception's text.
    assert (result.error_type, result.error) == ("hook_error", "The broken hook failed (ZeroDivisionError).")

    offline_agent.pre_hooks = ["sleepy"]
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
        offline_agent.pre_hooks = [hook_name]
        await offline_agent.asave()
        r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
        assert r.status_code == status, r.text


@pytest.mark.django_db
def test_an_unregistered_hook_fails_the_run_before_the_model(offline_agent, user, scripted_model):
    Agent.objects.filter(pk=offline_agent.pk).update(pre_hooks=["vanished"])
    from agents_app.selectors import agent_cache_clear

    agent_cache_clear()
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
    offline_agent.pre_hooks = ["count", "strike_then_reject"]
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
    offline_agent.post_hooks = ["later"]
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
    offline_agent.pre_hooks, offline_agent.post_hooks = [], ["later"]
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
    assert published == [[(execution.pk, "later")]]
    hook_executions_sweep()  # the sweep bumped updated_at: not published again at once
    assert len(published) == 1


@pytest.mark.django_db
def test_background_pre_hooks_are_not_queued_for_a_rejected_input(register, offline_agent, user):
    register(lambda ctx: None, name="later_pre", background=True, phases=["pre"])
    register(lambda ctx: ctx.reject("no"), name="gate", guardrail=True, phases=["pre"])
    offline_agent.pre_hooks = ["later_pre", "gate"]
    offline_agent.save()
    assert run_agent(agent_id=offline_agent.slug, user=user, message="hi").error_type == "input_rejected"
    assert not HookExecution.objects.exists()
    offline_agent.pre_hooks = ["later_pre"]
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
    offline_agent.post_hooks = ["slow"]
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
    agent.pre_hooks = ["input_check"]
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
    agent.post_hooks = ["output_check"]
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
    agent.pre_hooks = ["input_check"]
    agent.save()
    for _ in range(3):  # the hook's attempts
        scripted_model.push_text("I think it is fine!")
    result = run_agent(agent_id=agent.slug, user=user, message="hi")
    assert result.error_type == "hook_error" and "not JSON" in result.error


@pytest.mark.django_db
def test_model_judged_hooks_work_with_the_offline_model(offline_agent, user):
    offline_agent.pre_hooks = ["input_check"]
    offline_agent.post_hooks = ["output_check"]
    offline_agent.save()
    result = run_agent(agent_id=offline_agent.slug, user=user, message="hello")
    assert result.status == "completed"
    assert event_names(result)[:3] == ["RunStarted", "PreHookStarted", "PreHookCompleted"]


@pytest.mark.django_db
def test_the_judge_model_can_be_another_model_config(agent, offline_agent, user, scripted_model):
    agent.pre_hooks = ["input_check"]
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
    agent.pre_hooks = ["redact_pii"]
    agent.post_hooks = ["redact_pii"]
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
    agent.pre_hooks = ["track_topics"]  # background by default
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


@pytest.mark.django_db
def test_admin_picks_hooks_in_order_and_where_they_run(admin_client, offline_agent):
    from django.urls import reverse

    from tests.test_admin import agent_post

    url = reverse("admin:agents_app_agent_change", args=[offline_agent.pk])
    page = admin_client.get(url).content.decode()
    assert 'class="agentos-hooks"' in page
    assert 'name="hooks__pre__input_check"' in page and 'name="hooks__post__input_check"' not in page
    assert "Always inline (a guardrail)" in page and 'name="hooks__mode__track_topics"' in page
    data = agent_post(
        offline_agent.model,
        name=offline_agent.name,
        slug=offline_agent.slug,
        hooks__pre__redact_pii="2",
        hooks__pre__input_check="1",
        hooks__pre__track_topics="3",
        hooks__post__output_check="1",
        hooks__mode__track_topics="inline",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    offline_agent.refresh_from_db()
    assert offline_agent.pre_hooks == ["input_check", "redact_pii", "track_topics"]
    assert offline_agent.post_hooks == ["output_check"]
    assert offline_agent.hook_modes == {"track_topics": "inline"}
    bad = admin_client.post(url, {**data, "hooks__pre__redact_pii": "first"})
    assert bad.status_code == 200 and "the order must be a whole number" in bad.content.decode()


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
