"""Secrets at rest: model API keys are stored encrypted, never in clear text.

Why Fernet (the `cryptography` package's authenticated encryption) through `MultiFernet`: it is the
well-kept standard for this in Python, each value carries its own timestamp and MAC (a tampered or
truncated value is refused, not decrypted to garbage), and `MultiFernet.rotate` re-encrypts a value
under the newest key while every older key still decrypts. We chose it over a third-party Django
field package because those derive their key from SECRET_KEY alone and rotate only by changing it;
here a site can keep dedicated keys (`AGENTOS["ENCRYPTION_KEYS"]`) and rotate them on its own.

The keys, newest first:
1. `AGENTOS["ENCRYPTION_KEYS"]` (env `AGENTOS_ENCRYPTION_KEYS`, comma-separated Fernet keys; make one
   with `manage.py rotate_encryption_keys --generate`); the first one encrypts;
2. a key derived from `SECRET_KEY` (HKDF-SHA256), then one from each `SECRET_KEY_FALLBACKS` entry.
   With no dedicated keys (the embedded defaults) the SECRET_KEY one encrypts, so a fresh site
   works with no set-up; rotating SECRET_KEY the Django way (old key into SECRET_KEY_FALLBACKS) then
   running `manage.py rotate_encryption_keys` moves every stored key to the new one.

A stored value is `enc:v1:<token>`; anything else is a value from before encryption, which reads
as it is and is encrypted by migration 0009 (or the next save).
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

from sessions_app.conf import agentos_settings

logger = logging.getLogger(__name__)

PREFIX = "enc:v1:"
_HKDF_INFO = b"agentos model api keys v1"


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key (a key was removed too early)."""


def _derived(secret: str) -> bytes:
    """A Fernet key from a Django SECRET_KEY (HKDF: the secret is long and random, no stretching needed)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agentos", info=_HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


def configured_keys() -> list[bytes]:
    """Every key that may decrypt, the one that encrypts first (see the module docstring)."""
    keys: list[bytes] = []
    for key in agentos_settings.ENCRYPTION_KEYS or []:
        key = key.strip()
        if key:
            keys.append(key.encode() if isinstance(key, str) else key)
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    keys.extend(_derived(secret) for secret in secrets if secret)
    return keys


_cache_lock = threading.Lock()
_cache: tuple[tuple[bytes, ...], MultiFernet] | None = None


def _fernet() -> MultiFernet:
    """One MultiFernet per key set (rebuilt when settings change, e.g. under override_settings)."""
    global _cache
    keys = tuple(configured_keys())
    with _cache_lock:
        if _cache is None or _cache[0] != keys:
            _cache = (keys, MultiFernet([Fernet(k) for k in keys]))
        return _cache[1]


def check_keys() -> str | None:
    """None if every configured key is a valid Fernet key, else what is wrong (for `manage.py check`)."""
    for index, key in enumerate(agentos_settings.ENCRYPTION_KEYS or []):
        try:
            Fernet(key.strip())
        except (ValueError, TypeError):
            return f'AGENTOS["ENCRYPTION_KEYS"][{index}] is not a Fernet key (32 url-safe base64-encoded bytes).'
    return None


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def encrypt(value: str) -> str:
    """`value` encrypted with the newest key ("" stays "": no key is not a secret)."""
    if not value or is_encrypted(value):
        return value
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    """The clear text of a stored value. Raises SecretUnreadable when no configured key opens it."""
    if not value or not is_encrypted(value):
        return value
    try:
        return _fernet().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored API key cannot be decrypted with the configured keys (AGENTOS['ENCRYPTION_KEYS'], "
            "SECRET_KEY, SECRET_KEY_FALLBACKS): was a key removed before `manage.py rotate_encryption_keys` ran?"
        ) from None


def rotate(value: str) -> str:
    """`value` re-encrypted under the newest key (a clear-text value is encrypted)."""
    if not value:
        return value
    if not is_encrypted(value):
        return encrypt(value)
    try:
        return PREFIX + _fernet().rotate(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored API key cannot be decrypted with the configured keys.") from None


class EncryptedTextField(models.TextField):
    """A text column whose values are encrypted at rest: Python code sees clear text, the database
    only `enc:v1:` tokens. A value no configured key can open reads as "" (logged, never raised:
    the admin and the API must stay usable; `manage.py check` reports it)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        try:
            return decrypt(value)
        except SecretUnreadable:
            logger.error("A stored secret (%s) cannot be decrypted; it reads as empty.", self.name)
            return ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return value
        return encrypt(str(value))
