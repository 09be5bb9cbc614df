"""One attempt of a hook, and how its failure reads: shared by inline hooks (agents_app.hooks.runner)
and background ones (agents_app.hooks.executions), so both behave alike."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async

from agents_app.hooks.context import HookContext
from agents_app.hooks.errors import HookError, HookFailure, HookOutputInvalid, HookTimeout
from agents_app.hooks.registry import Hook
from agents_app.providers.base import ModelError
from agents_app.providers.structured import OutputInvalid


async def call_hook(hook: Hook, ctx: HookContext) -> Any:
    """One attempt, bounded by the hook's timeout (TimeoutError). A sync hook runs in a worker thread;
    when it overruns, the thread is abandoned (Python cannot stop it) and its result ignored."""
    if hook.is_async:
        return await asyncio.wait_for(hook.fn(ctx), hook.timeout)
    return await asyncio.wait_for(sync_to_async(hook.fn, thread_sensitive=False)(ctx), hook.timeout)


def failure_for(hook: Hook, exc: BaseException) -> HookError:
    """A hook's exception as the error a client may read: our own error types keep their message
    (written for clients); anything else shows only its type (details go to the log)."""
    if isinstance(exc, TimeoutError):
        return HookTimeout(f"The {hook.name} hook did not finish within {hook.timeout:g} s.", hook_name=hook.name)
    if isinstance(exc, OutputInvalid):
        return HookOutputInvalid(f"The {hook.name} hook's model failed: {exc}", hook_name=hook.name)
    if isinstance(exc, HookFailure | ModelError):
        return HookError(f"The {hook.name} hook failed: {exc}", hook_name=hook.name)
    return HookError(f"The {hook.name} hook failed ({type(exc).__name__}).", hook_name=hook.name)
