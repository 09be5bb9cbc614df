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
as it is and is encrypted by migration 0009 (or the next save). Encrypting is idempotent: a value
that already is a token is stored as it is (so `loaddata` of a `dumpdata`, which holds tokens, and
writing a token back both keep it).

Which key a model config uses (`resolve_api_key`): the stored one; else the environment variable
it names (`api_key_env`), else `OPENAI_API_KEY` for the `openai` provider. docs/models.md#api-keys.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.encoding import force_bytes

from sessions_app.conf import agentos_settings

if TYPE_CHECKING:
    from agents_app.models import ModelConfig

logger = logging.getLogger(__name__)

PREFIX = "enc:v1:"
_HKDF_INFO = b"agentos model api keys v1"
# The provider whose key defaults to OPENAI_API_KEY (ModelConfig.Provider.OPENAI; not imported: the
# models import this module).
OPENAI_PROVIDER = "openai"
OPENAI_KEY_ENV = "OPENAI_API_KEY"


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key (a key was removed too early)."""


class UnreadableValue(str):
    """What an EncryptedTextField reads when no configured key opens the stored value: empty text
    that keeps the stored token, so saving the row again writes the token back unchanged (putting
    the removed key back makes it readable again) instead of wiping it."""

    token: str

    def __new__(cls, token: str) -> UnreadableValue:
        value = super().__new__(cls, "")
        value.token = token
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return (UnreadableValue, (self.token,))

    def __repr__(self) -> str:
        return "<unreadable secret>"


def _dedicated_keys() -> list[bytes]:
    """AGENTOS["ENCRYPTION_KEYS"] as a list of keys: a list (or one comma-separated string, as in
    the environment variable), blanks skipped."""
    value = agentos_settings.ENCRYPTION_KEYS or []
    if isinstance(value, str | bytes):
        value = force_bytes(value).split(b",")
    return [key for key in (force_bytes(k).strip() for k in value) if key]


@functools.lru_cache(maxsize=16)
def _derived(secret: bytes) -> bytes:
    """A Fernet key from a Django SECRET_KEY (HKDF: the secret is long and random, no stretching needed).
    Cached: every encryption and decryption asks for the key set."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agentos", info=_HKDF_INFO).derive(secret)
    return base64.urlsafe_b64encode(raw)


def configured_keys() -> list[bytes]:
    """Every key that may decrypt, the one that encrypts first (see the module docstring)."""
    keys = _dedicated_keys()
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    keys.extend(_derived(force_bytes(secret)) for secret in secrets if secret)
    return keys


def check_keys() -> str | None:
    """None if every configured key is a valid Fernet key, else what is wrong (for `manage.py check`;
    the message never contains the key)."""
    for index, key in enumerate(_dedicated_keys()):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return f'AGENTOS["ENCRYPTION_KEYS"][{index}] is not a Fernet key (32 url-safe base64-encoded bytes).'
    return None


_cache_lock = threading.Lock()
_cache: tuple[tuple[bytes, ...], MultiFernet] | None = None


def _fernet() -> MultiFernet:
    """One MultiFernet per key set (rebuilt when settings change, e.g. under override_settings)."""
    global _cache
    keys = tuple(configured_keys())
    with _cache_lock:
        if _cache is None or _cache[0] != keys:
            problem = check_keys()
            if problem:
                raise ImproperlyConfigured(f"{problem} Make one with `manage.py rotate_encryption_keys --generate`.")
            _cache = (keys, MultiFernet([Fernet(k) for k in keys]))
        return _cache[1]


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def encrypt(value: str) -> str:
    """`value` encrypted with the newest key ("" stays "": no key is not a secret; a token stays as it is)."""
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
    """`value` re-encrypted under the newest key (a clear-text value is encrypted). Raises
    SecretUnreadable when no configured key opens it."""
    if not value:
        return value
    if not is_encrypted(value):
        return encrypt(value)
    try:
        return PREFIX + _fernet().rotate(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored API key cannot be decrypted with the configured keys.") from None


def readable(value: str) -> bool:
    """Whether a stored (raw) value opens with the configured keys ("" and clear text do)."""
    try:
        decrypt(value)
    except SecretUnreadable:
        return False
    return True


class EncryptedTextField(models.TextField):
    """A text column whose values are encrypted at rest: Python code sees clear text, the database
    only `enc:v1:` tokens. A value no configured key can open reads as an empty UnreadableValue
    (logged, never raised: the admin and the API must stay usable; `manage.py check` reports it),
    which a save writes back unchanged. Serialized (`dumpdata`), the value is its token."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if not value:
            return value
        try:
            return decrypt(value)
        except SecretUnreadable:
            logger.error("A stored secret (%s) cannot be decrypted; it reads as empty.", self.name)
            return UnreadableValue(value)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableValue):
            return value.token
        value = super().get_prep_value(value)
        if value is None:
            return value
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        return self.get_prep_value(self.value_from_object(obj)) or ""


def raw_values(model: type[models.Model], field_name: str) -> models.QuerySet:
    """(pk, stored value) pairs of a model's encrypted column, as the database holds them: not
    decrypted (an ExpressionWrapper with a plain text output field skips the field's from_db_value)."""
    raw = models.ExpressionWrapper(models.F(field_name), output_field=models.TextField())
    return model._default_manager.annotate(_stored=raw).exclude(_stored="").values_list("pk", "_stored")


def encrypted_columns() -> Iterator[tuple[type[models.Model], str]]:
    """Every (model, field name) stored by an EncryptedTextField, in every installed app."""
    from django.apps import apps

    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field.name


# ---- which key a model config uses -----------------------------------------------------------


def key_env_name(config: ModelConfig) -> str:
    """The environment variable a model config's key is read from when none is stored ("": none)."""
    if config.api_key_env:
        return config.api_key_env
    return OPENAI_KEY_ENV if config.provider == OPENAI_PROVIDER else ""


def resolve_api_key(config: ModelConfig) -> str:
    """The key to send: the stored one; else the named environment variable's value; else "".
    A stored key that cannot be decrypted gives "" (no fallback to the environment: the stored key
    is the one the operator chose; the call fails as unauthorized and `manage.py check` says why).
    The environment is read when the provider is built (once per config version and process)."""
    stored = config.api_key
    if isinstance(stored, UnreadableValue):
        return ""
    if stored:
        return stored
    name = key_env_name(config)
    return os.environ.get(name, "").strip() if name else ""


def key_source(config: ModelConfig) -> str:
    """Where a model config's key comes from, for the admin and the staff API (never the key):
    "stored", "stored (unreadable)", "env: NAME (set)", "env: NAME (unset)" or "none"."""
    if isinstance(config.api_key, UnreadableValue):
        return "stored (unreadable)"
    if config.api_key:
        return "stored"
    name = key_env_name(config)
    if not name:
        return "none"
    return f"env: {name} ({'set' if os.environ.get(name, '').strip() else 'unset'})"
