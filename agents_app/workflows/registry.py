"""The registry of workflow step functions, like the tool registry for agents.

A step function gets a `StepInput` (the workflow's input, the previous step's output, every earlier
step's output, the workflow's session state to read and change, and the step's own `args` from the
admin) and returns the step's output (text, or anything JSON-serializable). A condition step's
function returns a truth value. Functions may be sync (run in a thread) or async.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class StepInput:
    """What a step function sees. `state` is shared by every step of the run and saved with the
    session when the workflow ends (also when it fails), so later runs of the session see it."""

    input: str
    previous_output: str
    outputs: dict[str, str]
    state: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    workflow_id: str = ""
    step_name: str = ""


@dataclass(frozen=True, slots=True)
class StepFunction:
    name: str
    description: str
    fn: Callable[..., Any]
    is_async: bool


class StepRegistry:
    def __init__(self) -> None:
        self._functions: dict[str, StepFunction] = {}

    def register(self, fn: Callable[..., Any], *, name: str | None = None) -> StepFunction:
        key = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        item = StepFunction(
            name=key,
            description=doc.split("\n\n", 1)[0].replace("\n", " "),
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
        )
        self._functions[key] = item
        return item

    def unregister(self, name: str) -> None:
        self._functions.pop(name, None)

    def get(self, name: str) -> StepFunction | None:
        return self._functions.get(name)

    def names(self) -> list[str]:
        return sorted(self._functions)

    def choices(self) -> list[tuple[str, str]]:
        return [
            (n, f"{n}: {self._functions[n].description}" if self._functions[n].description else n) for n in self.names()
        ]


step_registry = StepRegistry()


@overload
def step_function(fn: F) -> F: ...
@overload
def step_function(*, name: str | None = None) -> Callable[[F], F]: ...
def step_function(fn: Any = None, *, name: str | None = None) -> Any:
    """Register a workflow step function: `@step_function` or `@step_function(name="...")`.
    List its module in AGENTOS["STEP_MODULES"] so it is imported at start-up."""

    def decorate(func: F) -> F:
        step_registry.register(func, name=name)
        return func

    return decorate(fn) if fn is not None else decorate
