"""Settings and tools of the live server that tests/test_agno_client_parity.py drives with agno's
client: the site's own settings plus one test tool that needs a person's confirmation (so agno's
continue_agent_run has a paused run to continue). Used as DJANGO_SETTINGS_MODULE of that server."""

from __future__ import annotations

from agentos_site.settings import *  # noqa: F403
from agentos_site.settings import AGENTOS

AGENTOS = {
    **AGENTOS,
    "TOOL_MODULES": [*AGENTOS.get("TOOL_MODULES", ["agents_app.tools.builtin"]), "tests.parity_tools"],
}
