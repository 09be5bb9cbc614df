"""The hook registry: plain or async Python functions become hooks an operator can attach to agents.

Mirrors the tool registry (`agents_app.tools.registry`): `@hook` records a function under a name,
the admin and the staff API offer the registered names, and agents attach them as rows (AgentHook).

A hook is called with one argument, a `HookContext` (agents_app.hooks.context), and returns:

* `None` to leave the input (pre-hooks) or the output (post-hooks) as it is;
* a new value to replace it: a string for the input; a string, or for agents with an output
  schema the JSON object, for the output (inline hooks only; a background hook's return value is
  ignored, because by then the run has answered);

or raises `InputRejected` / `OutputRejected` (or `ctx.reject(reason)`) to refuse the run.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from agents_app.tools.registry import Registry, decorator

PRE = "pre"
POST = "post"
# Our internal post-hooks (registered by agents_app.memory), planned from an agent's memory settings.
MEMORY_HOOK = "agentos_memory"
SUMMARY_HOOK = "agentos_session_summary"
PHASES = (PRE, POST)

DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Hook:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    description: str
    # The author's default: run in the background (a Celery task after the run commits) or inline.
    background: bool
    # Retries after a failed attempt (an exception or a timeout): a hook runs at most retries + 1 times.
    retries: int
    # Seconds one attempt may take.
    timeout: float
    # Where the hook may be attached: before the model ("pre"), after it ("post"), or both.
    phases: frozenset[str]
    # A guardrail gates the run (rejects or rewrites what the model sees or what the client gets), so
    # it always runs inline: no setting can move it to the background, where it could gate nothing.
    guardrail: bool
    # Ours (automatic memory, session summaries): planned by the engine from the agent's memory
    # settings, never offered in the admin's hook lists.
    internal: bool = False

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def label(self) -> str:
        return f"{self.name}: {self.description}" if self.description else self.name


class HookRegistry(Registry[Hook]):
    def __init__(self) -> None:
        super().__init__()
        self._loaded = False
        self._load_lock = threading.Lock()

    def _ensure_loaded(self) -> None:
        """Import AGENTOS["HOOK_MODULES"] once, so their @hook functions are registered in every process
        (web, worker, admin) before anyone asks for a hook by name."""
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            from sessions_app.conf import agentos_settings

            for module in ("agents_app.memory", *agentos_settings.HOOK_MODULES):
                import_module(module)
            self._loaded = True

    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        background: bool = False,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        phases: Iterable[str] = PHASES,
        guardrail: bool = False,
        internal: bool = False,
    ) -> Hook:
        hook_name = name or fn.__name__
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,100}", hook_name):
            raise ValueError(f"Hook name {hook_name!r} must match [a-zA-Z0-9_-]{{1,100}}.")
        phase_set = frozenset(phases)
        if not phase_set or not phase_set <= set(PHASES):
            raise ValueError(
                f"Hook {hook_name}: phases must be a non-empty subset of {PHASES}, not {sorted(phase_set)}."
            )
        if guardrail and background:
            raise ValueError(f"Hook {hook_name}: a guardrail gates the run, so it cannot run in the background.")
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
            raise ValueError(f"Hook {hook_name}: retries must be an integer from 0 to 20.")
        if not timeout or timeout <= 0:
            raise ValueError(f"Hook {hook_name}: timeout must be a positive number of seconds.")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise TypeError(f"Hook {hook_name} must accept exactly one argument, the HookContext.") from None
        doc = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " ").strip()
        item = Hook(
            name=hook_name,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            description=description or doc,
            background=bool(background),
            retries=retries,
            timeout=float(timeout),
            phases=phase_set,
            guardrail=bool(guardrail),
            internal=internal,
        )
        return self._add(item)

    def get(self, name: str) -> Hook | None:
        self._ensure_loaded()
        return super().get(name)

    def all(self, *, internal: bool = False) -> list[Hook]:
        """The registered hooks an operator can attach (with `internal=True`, ours too)."""
        self._ensure_loaded()
        return sorted((h for h in self._items.values() if internal or not h.internal), key=lambda h: h.name)

    def names(self, phase: str | None = None) -> list[str]:
        return [h.name for h in self.all() if phase is None or phase in h.phases]


hook_registry = HookRegistry()


def hook(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    background: bool = False,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    phases: Iterable[str] = PHASES,
    guardrail: bool = False,
) -> Any:
    """Register a function as a hook: `@hook` or `@hook(background=True, retries=5, timeout=10)`.

    `background` is only the default: an operator can override it per agent in the admin, and
    AGENTOS["HOOKS_BACKGROUND"] (`always` / `never`) overrides both for the whole site. Guardrails
    (`guardrail=True`) always run inline. The function stays callable as before.
    """
    options = {"background": background, "retries": retries, "timeout": timeout, "phases": phases}
    return decorator(hook_registry.register, fn, name=name, description=description, guardrail=guardrail, **options)
