"""agno AgentOS compatible HTTP API: one more thin edge over the same services and run engine.

Clients written against agno's AgentOS server (its Python `AgentOSClient`, `RemoteAgent`, the
Agent UI) work against this site by pointing their base URL at `<site>/os` (the prefix is
`AGENTOS["AGNO_COMPAT_PREFIX"]`) and sending `Authorization: Bearer <token>` with one of our API
tokens. `serializers.py` maps our data to agno's field names and shapes; `views.py` are the edges;
`schema.py` generates their OpenAPI document (`<prefix>/openapi.json`); docs/coming-from-agno.md
lists what differs from agno's own server.
"""

from __future__ import annotations


def url_prefix() -> str | None:
    """The URL prefix the site mounts the compatibility routes under: "os/" by default, "" for the
    site root, None when the setting is None (not served)."""
    from sessions_app.conf import agentos_settings

    prefix = agentos_settings.AGNO_COMPAT_PREFIX
    if prefix is None:
        return None
    prefix = str(prefix).strip("/")
    return f"{prefix}/" if prefix else ""
