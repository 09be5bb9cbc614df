"""Workflow step functions: plain Python registered with `@step_function`, picked per step in the admin."""

from agents_app.workflows.registry import StepInput, step_function, step_registry

__all__ = ["StepInput", "step_function", "step_registry"]
