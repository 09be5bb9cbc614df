"""The provider contract: what the run engine needs from any model backend.

Providers speak OpenAI's chat message format (a list of dicts) because every backend we target
does, and it keeps history replay exact. They raise ModelError subclasses, never SDK exceptions,
so the engine's error handling does not depend on a vendor's SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents_app.models import ModelConfig
    from agents_app.tools.registry import Tool


class ModelError(Exception):
    """The model call failed; `error_type` names the failure for clients and telemetry."""

    error_type = "model_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ModelTimeoutError(ModelError):
    error_type = "model_timeout"


class ModelRateLimitError(ModelError):
    error_type = "model_rate_limited"


class ModelConnectionError(ModelError):
    error_type = "model_unreachable"


class ModelAuthError(ModelError):
    error_type = "model_auth_failed"


class ModelRequestError(ModelError):
    """The endpoint refused the request itself (bad model id, context too long...)."""

    error_type = "model_bad_request"


@dataclass(slots=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # raw JSON text, as the model produced it


@dataclass(slots=True)
class ModelResponse:
    content: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    # Of the input tokens, those read from the provider's prompt cache (priced apart).
    cache_read_tokens: int = 0


@dataclass(slots=True)
class ResponseFormat:
    """A JSON schema the answer must match; providers pass it on as they can."""

    name: str
    schema: dict[str, Any]


class ModelProvider:
    """Base class for providers. One instance serves many runs; keep per-run state out of it."""

    name = "base"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    async def complete(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        response_format: ResponseFormat | None = None,
    ) -> ModelResponse:
        """The whole answer at once. By default the final item of stream(); providers with a cheaper
        non-streaming call override it."""
        response = None
        async for piece in self.stream(messages=messages, tools=tools, response_format=response_format):
            response = piece
        if not isinstance(response, ModelResponse):
            raise ModelError("The model stream ended without a final response.")
        return response

    def stream(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[str | ModelResponse]:
        """Yield content deltas (str) as they arrive, then one final ModelResponse with the whole
        content, the tool calls and the usage."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
