"""Step functions that come with the product, so a workflow can branch and keep state without code."""

from __future__ import annotations

from typing import Any

from agents_app.workflows.registry import StepInput, step_function


@step_function
def output_contains(step: StepInput) -> bool:
    """True when the previous output contains args["text"] (any case): for condition steps."""
    needle = str(step.args.get("text", "")).lower()
    return bool(needle) and needle in step.previous_output.lower()


@step_function
def state_flag(step: StepInput) -> bool:
    """True when the session state's args["key"] is set and truthy: for condition steps."""
    return bool(step.state.get(str(step.args.get("key", ""))))


@step_function
def remember_output(step: StepInput) -> str:
    """Store the previous output in the session state under args["key"] (default "last_output") and
    pass it on unchanged."""
    key = str(step.args.get("key") or "last_output")
    step.state[key] = step.previous_output
    return step.previous_output


@step_function
def join_outputs(step: StepInput) -> str:
    """Every earlier step's output, one section per step, for a final agent to summarize."""
    names: Any = step.args.get("steps") or list(step.outputs)
    return "\n\n".join(f"## {name}\n{step.outputs[name]}" for name in names if name in step.outputs)
