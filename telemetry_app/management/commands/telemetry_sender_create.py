"""Collector side: allow a deployment to post telemetry here. Prints its key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telemetry_app.models import TelemetrySender
from telemetry_app.services import telemetry_sender_create


class Command(BaseCommand):
    help = "Create a telemetry sender and print its key (shown once; only a hash is stored)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="A name for the sending deployment, unique on this collector.")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        if TelemetrySender.objects.filter(name=name).exists():
            raise CommandError(f"A sender named {name!r} exists; rotate its key in the admin.")
        _sender, key = telemetry_sender_create(name=name)
        self.stdout.write(key)
