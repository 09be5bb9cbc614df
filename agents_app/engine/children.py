"""What teams and workflows share besides child runs (agents_app.engine.team.ChildRun): the
failures a child passes up, a child's answer as text, and running several children at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from agents_app.engine.outcome import ChildCancelled

__all__ = ["ChildCancelled", "ChildFailed", "DelegationDepthExceeded", "content_text", "merge"]


class ChildFailed(Exception):
    """A member or step run ended in an error; the parent ends with this error (what finished is kept)."""

    error_type = "member_error"

    def __init__(self, message: str, *, child_error_type: str = "") -> None:
        super().__init__(message)
        self.child_error_type = child_error_type


class DelegationDepthExceeded(Exception):
    error_type = "delegation_depth_exceeded"


def content_text(content: Any) -> str:
    """A child's answer as the text the next model or step reads (JSON answers as JSON text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, default=str)


_DONE = object()


async def merge(sources: list[AsyncIterator[Any]]) -> AsyncIterator[tuple[int, Any]]:
    """Run several iterators at once and yield (which, item) as items come. Every source runs to its
    end even if another fails (its work is kept); then the first failure (by position) is raised,
    a cancellation first of all. Cancelled while waiting, it cancels the sources, still yields what
    they emit while they stop (their cancelled ends), then raises ChildCancelled."""
    queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()

    async def pump(index: int, source: AsyncIterator[Any]) -> None:
        try:
            async for item in source:
                queue.put_nowait((index, item, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            queue.put_nowait((index, _DONE, exc))
        else:
            queue.put_nowait((index, _DONE, None))

    tasks = [asyncio.ensure_future(pump(i, source)) for i, source in enumerate(sources)]
    remaining = len(tasks)
    errors: dict[int, BaseException] = {}
    try:
        while remaining:
            try:
                index, item, exc = await queue.get()
            except asyncio.CancelledError:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                while not queue.empty():
                    index, item, exc = queue.get_nowait()
                    if item is not _DONE:
                        yield index, item
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                raise ChildCancelled("The run was cancelled.") from None
            if item is _DONE:
                remaining -= 1
                if exc is not None:
                    errors[index] = exc
                continue
            yield index, item
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    for exc in errors.values():
        if isinstance(exc, (ChildCancelled, asyncio.CancelledError)):
            raise ChildCancelled("The run was cancelled.")
    if errors:
        raise errors[min(errors)]
