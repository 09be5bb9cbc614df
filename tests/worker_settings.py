"""Settings for the processes the Celery integration test starts (a web-side producer and real
workers): the site's settings, plus the test's hook module and timings short enough for a test."""

from agentos_site.settings import *  # noqa: F403
from agentos_site.settings import AGENTOS

AGENTOS = {
    **AGENTOS,
    "HOOK_MODULES": ["agents_app.hooks.builtin", "tests.hooks_for_worker"],
    "HOOKS_LEASE_GRACE_SECONDS": 1.0,
    "HOOKS_RETRY_BACKOFF_SECONDS": 0.2,
}
# A killed worker's unacknowledged task is redelivered after 2 s (production: an hour), checked every second.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
