"""The apps' settings: one `AGENTOS` dict in the host's settings, with a default for every key.

A host site sets only what it changes. Values are read on access (not cached at import) so tests
and `override_settings` see changes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Longest user message accepted by any edge, in characters.
    "MAX_MESSAGE_CHARS": 32_000,
    # How long a process keeps an agent (with its model config) cached between runs.
    "AGENT_CACHE_SECONDS": 5.0,
    # A tool call that takes longer is abandoned and reported to the model as an error.
    "TOOL_TIMEOUT_SECONDS": 30.0,
    # Upper bound on history runs an agent may ask for, whatever its admin setting says.
    "MAX_HISTORY_RUNS": 50,
    # Modules imported at start-up so that their @tool functions register.
    "TOOL_MODULES": ["agents_app.tools.builtin"],
    # Provider name -> import path of a agents_app.providers.base.ModelProvider subclass.
    "MODEL_PROVIDERS": {
        "openai": "agents_app.providers.openai_compat.OpenAICompatibleProvider",
        "offline": "agents_app.providers.offline.OfflineProvider",
    },
    # Telemetry and feature flags (used by telemetry_app and by alpha features).
    "API_RUNTIME": "prd",
    "ALPHA_FEATURES": False,
}


class AgentOSSettings:
    """Attribute access to AGENTOS with defaults: `agentos_settings.MAX_MESSAGE_CHARS`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown AgentOS setting: {name}")
        user = getattr(settings, "AGENTOS", {}) or {}
        return user.get(name, DEFAULTS[name])


agentos_settings = AgentOSSettings()
