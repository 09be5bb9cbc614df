"""`manage.py agentos_run RUNNABLE "message"`: one run for scripts. Prints the answer's text; with
--stream, the text as it arrives; with --json, the run's JSON (the REST API's), or with --stream
--json one JSON event per line. Exits 1 when the run failed (docs/terminal.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents_app.management.chat import (
    CONTENT,
    TERMINAL,
    add_backend_arguments,
    backend_from_options,
    error_code,
    paused_notice,
    resolve_or_fail,
    run_errors,
)


class Command(BaseCommand):
    help = "Run an agent, team or workflow once with a message; print its answer (--json, --stream)."

    def add_arguments(self, parser: Any) -> None:
        add_backend_arguments(parser)
        parser.add_argument("message")
        parser.add_argument("--json", action="store_true", help="The run's JSON (with --stream: one event per line).")
        parser.add_argument("--stream", action="store_true", help="Print the answer as it arrives.")

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        try:
            runnable = resolve_or_fail(backend, options["runnable"])
            status = self._run(backend, runnable, options)
        except run_errors() as exc:
            raise CommandError(f"{error_code(exc)}: {exc}") from exc
        finally:
            backend.close()
        if status not in ("completed", "paused", "cancelled"):
            sys.exit(1)

    def _run(self, backend: Any, runnable: Any, options: dict[str, Any]) -> str:
        message, session = options["message"], options.get("session")
        if not options["stream"]:
            result = backend.run(runnable, message, session)
            if options["json"]:
                self.stdout.write(json.dumps(result, ensure_ascii=False, default=str))
            else:
                content = result.get("content")
                if result.get("status") == "paused":
                    # No answer yet (not "null"): what it waits for goes to stderr.
                    self.stdout.write(content if isinstance(content, str) else "")
                    self.stderr.write(paused_notice(result))
                else:
                    self.stdout.write(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
                if result.get("status") == "error":
                    self.stderr.write(f"error: {(result.get('error') or {}).get('type')}")
            return str(result.get("status"))
        final: dict[str, Any] = {}
        streamed = False

        def on_event(event: dict[str, Any]) -> None:
            nonlocal streamed
            nested = bool(event.get("parent_run_id"))
            if options["json"]:
                self.stdout.write(json.dumps(event, ensure_ascii=False, default=str))
                self.stdout.flush()
            elif event.get("event") in CONTENT and not nested:
                streamed = True
                self.stdout.write(str(event.get("content") or ""), ending="")
                self.stdout.flush()
            if event.get("event") in TERMINAL and not nested:
                final.update(event)

        backend.stream(runnable, message, session, on_event)
        name = str(final.get("event", ""))
        if not options["json"]:
            if not streamed and isinstance(final.get("content"), str) and "Error" not in name:
                self.stdout.write(final["content"], ending="")
            self.stdout.write("")
            if name.endswith("Error"):
                self.stderr.write(f"error: {final.get('error_type')}: {final.get('content')}")
            elif name.endswith("Paused"):
                self.stderr.write(paused_notice(final))
        if name.endswith("Error"):
            return "error"
        if name.endswith("Cancelled"):
            return "cancelled"
        return "paused" if name.endswith("Paused") else "completed" if final else "error"
