"""`manage.py agentos_chat RUNNABLE`: talk to an agent, team or workflow in the terminal, with
streamed answers rendered by Rich (docs/terminal.md). In-process on the local database, or a remote
site with --url and --token."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from rich.console import Console

from agents_app.management.chat import add_backend_arguments, backend_from_options, chat_loop, resolve_or_fail


class Command(BaseCommand):
    help = "Chat with an agent, team or workflow in the terminal: /new, /sessions, /switch ID, /exit."

    def add_arguments(self, parser: Any) -> None:
        add_backend_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        try:
            runnable = resolve_or_fail(backend, options["runnable"])
            console = Console()

            def read() -> str:
                return console.input("[bold green]you>[/] ")

            chat_loop(console, backend, runnable, options.get("session"), read)
        finally:
            backend.close()
