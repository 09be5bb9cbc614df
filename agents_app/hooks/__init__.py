"""Lifecycle hooks for agents: pre-hooks see (and may rewrite or reject) the input before the model
runs; post-hooks see (and may rewrite or reject) the answer. A hook runs inline or in the background
(a Celery task after the run commits). See agents_app.hooks.runner for the rules, and docs/hooks.md.

    from agents_app.hooks import HookContext, hook

    @hook(background=True, retries=3, timeout=10)
    def remember_language(ctx: HookContext) -> None:
        ctx.session_state["language"] = detect(ctx.input)
"""

from agents_app.hooks.context import HookContext
from agents_app.hooks.errors import HookError, HookRejected, HookTimeout, InputRejected, OutputRejected
from agents_app.hooks.registry import Hook, hook, hook_registry

__all__ = [
    "Hook",
    "HookContext",
    "HookError",
    "HookRejected",
    "HookTimeout",
    "InputRejected",
    "OutputRejected",
    "hook",
    "hook_registry",
]
