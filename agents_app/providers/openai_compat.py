"""Any OpenAI-compatible chat completions endpoint, through the official `openai` SDK.

Retries with backoff on 429, 5xx, timeouts and connection errors are the SDK's own (it honours
Retry-After); other 4xx fail at once. One client per model config and event loop is reused, so
a run never pays for client construction or a new TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import openai
import orjson

from agents_app.providers.base import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelProvider,
    ModelRateLimitError,
    ModelRequestError,
    ModelResponse,
    ModelTimeoutError,
    ResponseFormat,
    ToolCallRequest,
)
from agents_app.secrets import resolve_api_key

if TYPE_CHECKING:
    from agents_app.models import ModelConfig
    from agents_app.tools.registry import Tool


def _translate(exc: Exception) -> ModelError:
    """Map SDK exceptions to ours; the message never includes the API key (the SDK omits it)."""
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeoutError("The model did not answer in time.")
    if isinstance(exc, openai.APIConnectionError):
        return ModelConnectionError(f"Could not reach the model server: {exc}")
    if isinstance(exc, openai.RateLimitError):
        return ModelRateLimitError("The model server is rate limiting requests (HTTP 429).", status_code=429)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelAuthError(
            f"The model server refused the credentials (HTTP {exc.status_code}).", status_code=exc.status_code
        )
    if isinstance(exc, openai.APIStatusError):
        detail = exc.message if isinstance(exc.message, str) else str(exc)
        if 400 <= exc.status_code < 500:
            return ModelRequestError(
                f"The model server rejected the request (HTTP {exc.status_code}): {detail}", status_code=exc.status_code
            )
        return ModelError(f"The model server failed (HTTP {exc.status_code}): {detail}", status_code=exc.status_code)
    name = type(exc).__name__
    if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2"):
        # Raised while reading a streamed body, after the SDK handed the response over.
        if "Timeout" in name:
            return ModelTimeoutError("The model stopped sending in time.")
        return ModelConnectionError(f"The connection to the model server broke: {name}: {exc}")
    if isinstance(exc, openai.APIError):
        return ModelError(f"The model server failed: {exc}")
    return ModelError(f"The model call failed: {type(exc).__name__}: {exc}")


def _completion_response(completion: Any) -> ModelResponse:
    """A chat completion (the JSON object) as our ModelResponse; tolerant as the SDK's objects are
    (a field missing or null is empty), strict only where nothing can be answered."""
    if not isinstance(completion, dict):
        raise ModelError("The model server sent a completion that is not a JSON object.")
    if completion.get("error"):
        raise ModelError(f"The model server failed: {completion['error']}")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelError("The model server returned no choices.")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else {}
    details = usage.get("prompt_tokens_details")
    calls = []
    for tc in message.get("tool_calls") or ():
        function = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(function, dict):
            calls.append(
                ToolCallRequest(
                    id=str(tc.get("id") or ""),
                    name=str(function.get("name") or ""),
                    arguments=function.get("arguments") or "{}",
                )
            )
    content = message.get("content")
    return ModelResponse(
        content=content if isinstance(content, str) else "",
        tool_calls=calls,
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        finish_reason=choice.get("finish_reason"),
        cache_read_tokens=(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
    )


# How long to wait, after a stream's `[DONE]`, for the end of its HTTP body.
_DRAIN_SECONDS = 0.25


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what is left of a stream after its `[DONE]` (normally just the end of the chunked
    body, in the same network read): a response read to its end returns its connection to the
    pool, while one closed early closes it, and the next run would connect again (a TCP, and with
    a real provider a TLS, handshake per streamed run). A server that keeps the stream open after
    `[DONE]` costs at most _DRAIN_SECONDS, and then the connection is closed as before."""
    with contextlib.suppress(TimeoutError, Exception):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in lines:
                pass


class OpenAICompatibleProvider(ModelProvider):
    name = "openai"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.client = openai.AsyncOpenAI(
            api_key=resolve_api_key(config) or "not-needed",  # keyless local servers need none
            base_url=config.base_url or None,
            timeout=config.timeout_seconds,
            max_retries=config.max_retries,
        )

    def _request(
        self, messages: list[dict[str, Any]], tools: list[Tool], response_format: ResponseFormat | None
    ) -> dict[str, Any]:
        """The create() arguments. The body goes in `extra_body`, which the SDK sends as it is: its
        typed parameters are walked recursively against their TypedDict annotations on every call,
        which cost several milliseconds of CPU per run with a few messages and tools in context.
        Our messages and tool schemas are already in the wire format, so nothing is lost."""
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = [t.openai_schema() for t in tools]
            body["parallel_tool_calls"] = True
        if response_format is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": response_format.name, "schema": response_format.schema},
            }
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens:
            body["max_tokens"] = self.config.max_tokens
        return {"model": self.config.model_id, "messages": [], "extra_body": body}

    async def complete(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        response_format: ResponseFormat | None = None,
    ) -> ModelResponse:
        try:
            # The SDK sends the request (auth, retries, timeouts, error mapping); we parse the body
            # ourselves with orjson, as the streaming path does: building the SDK's typed objects
            # for a completion cost more than the rest of the model call on our side.
            raw = await self.client.chat.completions.with_raw_response.create(
                **self._request(messages, tools, response_format)
            )
            completion = orjson.loads(raw.http_response.content)
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"The model server sent a malformed completion: {exc}") from exc
        except Exception as exc:
            raise _translate(exc) from exc
        return _completion_response(completion)

    async def stream(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[str | ModelResponse]:
        request = self._request(messages, tools, response_format)
        request["stream"] = True
        request["extra_body"]["stream_options"] = {"include_usage": True}
        content: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        result = ModelResponse()
        try:
            # The SDK sends the request (auth, retries, timeouts, error mapping); we read the SSE
            # lines ourselves with orjson: building the SDK's typed chunk objects was the largest
            # cost of a streamed run.
            async with self.client.chat.completions.with_streaming_response.create(**request) as response:
                lines = response.iter_lines()
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        await _drain(lines)
                        break
                    chunk = orjson.loads(data)
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        raise ModelError(f"The model server failed mid-stream: {chunk['error']}")
                    usage = chunk.get("usage")
                    if usage:
                        result.input_tokens = usage.get("prompt_tokens") or 0
                        result.output_tokens = usage.get("completion_tokens") or 0
                        details = usage.get("prompt_tokens_details")
                        if isinstance(details, dict):
                            result.cache_read_tokens = details.get("cached_tokens") or 0
                    choices = chunk.get("choices")
                    if not choices:
                        continue
                    choice = choices[0]
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        content.append(text)
                        yield text
                    for tc in delta.get("tool_calls") or ():
                        slot = calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": []})
                        function = tc.get("function") or {}
                        slot["id"] = tc.get("id") or slot["id"]
                        slot["name"] = function.get("name") or slot["name"]
                        slot["arguments"].append(function.get("arguments") or "")
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
        except ModelError:
            raise
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"The model server sent a malformed stream chunk: {exc}") from exc
        except Exception as exc:
            raise _translate(exc) from exc
        result.content = "".join(content)
        result.tool_calls = [
            ToolCallRequest(
                id=slot["id"] or f"call_{index}", name=slot["name"], arguments="".join(slot["arguments"]) or "{}"
            )
            for index, slot in sorted(calls.items())
        ]
        yield result

    async def aclose(self) -> None:
        await self.client.close()
