"""Settings for the processes the Celery integration test starts (a web-side producer and real
workers): the site's settings, plus the test's hook module and timings short enough for a test.
A test can stretch them through the environment (AGENTOS_TEST_*), e.g. to the production values."""

import os

from agentos_site.settings import *  # noqa: F403
from agentos_site.settings import AGENTOS, CELERY_BEAT_SCHEDULE

AGENTOS = {
    **AGENTOS,
    "HOOK_MODULES": ["agents_app.hooks.builtin", "tests.hooks_for_worker"],
    "HOOKS_LEASE_GRACE_SECONDS": float(os.environ.get("AGENTOS_TEST_LEASE_GRACE", "1.0")),
    "HOOKS_RETRY_BACKOFF_SECONDS": 0.2,
}
# A killed worker's unacknowledged task is redelivered after 2 s (production: an hour), checked every
# second. AGENTOS_TEST_VISIBILITY_TIMEOUT=3600 keeps the production value, so that only the sweep can
# bring a killed worker's hook back.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("AGENTOS_TEST_VISIBILITY_TIMEOUT", "2")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
# The beat entry of the sweep, every AGENTOS_TEST_SWEEP_SECONDS (production: 60) when a worker runs
# with -B.
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "agentos-hook-executions-sweep": {
        **CELERY_BEAT_SCHEDULE["agentos-hook-executions-sweep"],
        "schedule": float(os.environ.get("AGENTOS_TEST_SWEEP_SECONDS", "60")),
    },
}
