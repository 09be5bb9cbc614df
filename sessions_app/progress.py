"""Progress bars for long management commands (Rich), shown only when the command's output is a
terminal: piped into a file, a log or another program, a command prints exactly what it printed
before (its JSON summary stays parseable), with no escape codes and no cost.

Here, in the bottom app, because the commands of all three apps use it (the import contracts let
every app import sessions_app)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Progress:
    """What a command calls while it works: `advance(n)` and `log(text)` (a line above the bar)."""

    def __init__(self, stream: Any, bar: Any = None, task: Any = None) -> None:
        self._stream = stream
        self._bar = bar
        self._task = task

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self, n: float = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def set_total(self, total: float | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            self._stream.write(text)


def is_terminal(stream: Any) -> bool:
    """Django's OutputWrapper and plain files both answer `isatty()`."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed file
        return False


@contextmanager
def progress(stream: Any, description: str, *, total: float | None = None) -> Iterator[Progress]:
    """A progress bar on `stream` (a command's `self.stdout`) while the block runs, when `stream` is
    a terminal; otherwise a `Progress` that does nothing but pass `log` lines through."""
    if not is_terminal(stream):
        yield Progress(stream)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    out = getattr(stream, "_out", stream)  # Django's OutputWrapper wraps the real file
    console = Console(file=out, force_terminal=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Bar(*columns, console=console, transient=False, redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(description, total=total)
        yield Progress(stream, bar, task)
