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

from agents_app.tools.registry import Registry, decorator

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


class StepRegistry(Registry[StepFunction]):
    def register(self, fn: Callable[..., Any], *, name: str | None = None) -> StepFunction:
        doc = inspect.getdoc(fn) or ""
        description = doc.split("\n\n", 1)[0].replace("\n", " ")
        return self._add(StepFunction(name or fn.__name__, description, fn, inspect.iscoroutinefunction(fn)))


step_registry = StepRegistry()


@overload
def step_function(fn: F) -> F: ...
@overload
def step_function(*, name: str | None = None) -> Callable[[F], F]: ...
def step_function(fn: Any = None, *, name: str | None = None) -> Any:
    """Register a workflow step function: `@step_function` or `@step_function(name="...")`.
    List its module in AGENTOS["STEP_MODULES"] so it is imported at start-up."""
    return decorator(step_registry.register, fn, name=name)
