"""Re-encrypt every stored secret (model API keys) under the newest key, or make a new key.

The procedure (docs/models.md#rotating-the-keys): put a new key first in
`AGENTOS_ENCRYPTION_KEYS` (keep the old ones after it), restart, run this command, then remove the
old keys. The stored values are read as the database holds them (not decrypted by the field), each
is re-encrypted with `agents_app.secrets.rotate`, and all are written back in one transaction. If
any value opens with none of the configured keys, the command names it and changes nothing.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from agents_app import secrets
from sessions_app.progress import progress


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored API key under the newest encryption key (the first of "
        "AGENTOS_ENCRYPTION_KEYS, else the one derived from SECRET_KEY). --generate prints a new key."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--generate",
            action="store_true",
            help="Print a new Fernet key for AGENTOS_ENCRYPTION_KEYS; change nothing.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the stored values that would be re-encrypted; change nothing."
        )

    def handle(self, *args: Any, generate: bool = False, dry_run: bool = False, **options: Any) -> None:
        if generate:
            self.stdout.write(Fernet.generate_key().decode())
            return
        problem = secrets.check_keys()
        if problem:
            raise CommandError(problem)
        with transaction.atomic():
            updates: list[tuple[type[models.Model], str, Any, str]] = []
            unreadable: list[str] = []
            for model, field in secrets.encrypted_columns():
                for pk, stored in secrets.raw_values(model, field).select_for_update():
                    try:
                        updates.append((model, field, pk, secrets.rotate(stored)))
                    except secrets.SecretUnreadable:
                        unreadable.append(f"{model._meta.label} {pk} ({field})")
            if unreadable:
                for where in unreadable:
                    self.stderr.write(f"No configured key decrypts the stored value of {where}.")
                raise CommandError(
                    f"{len(unreadable)} stored value(s) cannot be decrypted with the configured keys; nothing was "
                    "changed. Put the key they were encrypted with back into AGENTOS_ENCRYPTION_KEYS (or "
                    "SECRET_KEY_FALLBACKS), or clear those keys in the admin, then run this again."
                )
            if dry_run:
                self.stdout.write(f"{len(updates)} stored value(s) would be re-encrypted under the newest key.")
                return
            with progress(self.stdout, "Re-encrypting", total=len(updates)) as bar:
                for model, field, pk, token in updates:
                    # A plain text Value: written as it is, not through the field's encryption again.
                    model._default_manager.filter(pk=pk).update(**{field: models.Value(token, models.TextField())})
                    bar.advance()
        self.stdout.write(f"Re-encrypted {len(updates)} stored value(s) under the newest key.")
