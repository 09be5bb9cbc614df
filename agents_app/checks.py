"""System checks (`manage.py check`, and before runserver and migrate) for model API keys.

- agentos.E001: AGENTOS["ENCRYPTION_KEYS"] holds a value that is not a Fernet key.
- agentos.W001: a model config needs a key and has none (provider `openai` talking to api.openai.com,
  no stored key, its environment variable unset). A custom base URL (a local server) needs none.
- agentos.W002: a stored key that no configured key decrypts (a key was removed too early).

The two warnings read the database; before it is migrated (or when it cannot be reached) they are
skipped. docs/models.md#checks.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from django.core import checks
from django.db import DatabaseError, transaction

from agents_app import secrets

OPENAI_HOST = "api.openai.com"


def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    problem = secrets.check_keys()
    if problem is None:
        return []
    return [
        checks.Error(
            problem,
            hint="Make one with `manage.py rotate_encryption_keys --generate` (AGENTOS_ENCRYPTION_KEYS).",
            id="agentos.E001",
        )
    ]


def _needs_key(base_url: str) -> bool:
    """Whether the endpoint is OpenAI's own (the default, empty base URL, is)."""
    return not base_url or urlsplit(base_url).hostname == OPENAI_HOST


def check_model_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if secrets.check_keys() is not None:
        return []  # agentos.E001 says why; nothing can be decrypted meanwhile
    from agents_app.models import ModelConfig

    try:
        with transaction.atomic():  # a savepoint: a failed query does not spoil an outer transaction
            configs = list(ModelConfig.objects.values_list("pk", "name", "provider", "base_url", "api_key_env"))
            stored = dict(secrets.raw_values(ModelConfig, "api_key"))
    except DatabaseError:  # OperationalError, ProgrammingError: not migrated yet, or no database
        return []
    messages: list[checks.CheckMessage] = []
    for pk, name, provider, base_url, env_name in configs:
        if pk in stored:
            if not secrets.readable(stored[pk]):
                messages.append(
                    checks.Warning(
                        f"The stored API key of model config {name!r} cannot be decrypted with the configured keys; "
                        "it reads as empty.",
                        hint=(
                            "Put the key it was encrypted with back into AGENTOS_ENCRYPTION_KEYS (or "
                            "SECRET_KEY_FALLBACKS) and run `manage.py rotate_encryption_keys`, or store the API key "
                            "again in the admin."
                        ),
                        obj=ModelConfig,
                        id="agentos.W002",
                    )
                )
            continue
        env_name = env_name or secrets.OPENAI_KEY_ENV
        if (
            provider == ModelConfig.Provider.OPENAI
            and _needs_key(base_url)
            and not os.environ.get(env_name, "").strip()
        ):
            messages.append(
                checks.Warning(
                    f"Model config {name!r} needs an API key and has none: no key is stored and {env_name} is unset.",
                    hint=f"Set {env_name} in the environment, or store a key in the admin (Agents > Model configs).",
                    obj=ModelConfig,
                    id="agentos.W001",
                )
            )
    return messages


def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """agentos.E002: a site rate limit that is not DRF's "<count>/<period>" would fail every run."""
    from agents_app.models import parse_rates
    from sessions_app.conf import agentos_settings

    errors = []
    for scope, rates in (agentos_settings.RUN_RATE_LIMITS or {}).items():
        try:
            parse_rates(",".join(rates or []))
        except ValueError as exc:
            errors.append(
                checks.Error(
                    f"AGENTOS['RUN_RATE_LIMITS']['{scope}']: {exc}",
                    hint="Use rates like 30/min or 500/hour (AGENTOS_RUN_RATE_USER, AGENTOS_RUN_RATE_RUNNABLE).",
                    id="agentos.E002",
                )
            )
    return errors
