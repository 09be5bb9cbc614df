"""What a hook can raise, and what the engine turns hook failures into.

`HookRejected` (or its phase-specific subclasses) is a verdict: the run stops with a `RunError` whose
`error_type` is `input_rejected` (pre-hooks) or `output_rejected` (post-hooks) and whose content is
the hook's reason, stored on the run. Any other exception, or a timeout, is a failure of the hook
itself: it is retried up to the hook's `retries`, then the run fails with `hook_error` or
`hook_timeout` (inline hooks) or the execution is recorded as failed (background hooks).
"""

from __future__ import annotations


class HookFailure(Exception):
    """Base of every hook outcome that ends a run."""

    error_type = "hook_error"

    def __init__(self, message: str, *, hook_name: str = "") -> None:
        super().__init__(message)
        self.hook_name = hook_name

    @property
    def reason(self) -> str:
        return str(self)


class HookRejected(HookFailure):
    """Raise from a hook to refuse the run; the message is the reason the client sees."""

    error_type = "hook_rejected"


class InputRejected(HookRejected):
    """A pre-hook refused the input (error_type `input_rejected`)."""

    error_type = "input_rejected"


class OutputRejected(HookRejected):
    """A post-hook refused the model's answer (error_type `output_rejected`)."""

    error_type = "output_rejected"


class HookError(HookFailure):
    """A hook raised (after its retries), returned a value of the wrong type, or is not registered."""


class HookTimeout(HookError):
    """A hook did not finish within its timeout (after its retries)."""

    error_type = "hook_timeout"


class HookOutputInvalid(HookError):
    """A model a hook asked for structured output (a judge, the memory manager) missed its schema
    even after one corrected retry: the run ends with `output_invalid` (the model's side, a 502),
    not with a hook error. Not retried again as a hook failure."""

    error_type = "output_invalid"
