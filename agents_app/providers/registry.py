"""Find the provider class for a model config and keep one instance per config and event loop.

Instances hold HTTP connection pools, which belong to the event loop that opened them; keying by
loop keeps the sync wrapper (a fresh loop per call) from reusing a pool bound to a closed loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from agents_app.providers.base import ModelProvider
from sessions_app.conf import agentos_settings

if TYPE_CHECKING:
    from agents_app.models import ModelConfig

_lock = threading.Lock()
_instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, ModelProvider]] = (
    weakref.WeakKeyDictionary()
)
_classes: dict[str, type[ModelProvider]] = {}


class UnknownProviderError(LookupError):
    pass


def provider_class(name: str) -> type[ModelProvider]:
    cls = _classes.get(name)
    if cls is None:
        path = agentos_settings.MODEL_PROVIDERS.get(name)
        if path is None:
            raise UnknownProviderError(f"No model provider named {name!r} is configured.")
        cls = _classes[name] = import_string(path)
    return cls


def get_provider(config: ModelConfig) -> ModelProvider:
    """The provider for `config` on the running loop, created on first use."""
    loop = asyncio.get_running_loop()
    key = (config.pk, config.provider, config.updated_at)
    with _lock:
        per_loop = _instances.setdefault(loop, {})
        provider = per_loop.get(key)
        if provider is None:
            # Drop instances of older versions of this config (edited in the admin).
            for stale in [k for k in per_loop if k[0] == config.pk]:
                per_loop.pop(stale)
            provider = per_loop[key] = provider_class(config.provider)(config)
    return provider
