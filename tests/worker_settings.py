"""Settings for the processes the Celery integration test starts (a web-side producer and real
workers): the site's settings, plus the test's hook module, timings short enough for a test, and the
broker's key prefix (required: these processes write to a Redis that may hold other people's keys).
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
# Every key the broker writes starts with the test's own prefix (AGENTOS_TEST_REDIS_PREFIX, from
# tests/redis_helpers.py): the test Redis may be shared, and the test deletes only its own keys.
REDIS_PREFIX = os.environ.get("AGENTOS_TEST_REDIS_PREFIX", "")
if not REDIS_PREFIX:
    raise RuntimeError("tests.worker_settings needs AGENTOS_TEST_REDIS_PREFIX (the broker's key prefix)")
# A killed worker's unacknowledged task is redelivered after 2 s (production: an hour), checked every
# second. AGENTOS_TEST_VISIBILITY_TIMEOUT=3600 keeps the production value, so that only the sweep can
# bring a killed worker's hook back.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": REDIS_PREFIX,
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
