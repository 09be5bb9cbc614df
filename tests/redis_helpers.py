"""Redis for the tests, without risk to anyone's data: only the Redis the environment names, and only
keys the tests wrote themselves.

The URL comes from `AGENTOS_TEST_REDIS_URL`, else `REDIS_URL` (the variable the site itself reads,
so a suite run with `REDIS_URL` set, as CI's PostgreSQL pass does, needs nothing more). No URL, or
no answer there: the tests that need Redis skip, or fail with `CI=true`. Nothing is ever flushed:
every key a test writes starts with a prefix of its own (the channel layer's `prefix`, the Celery
broker's `global_keyprefix`), under this pytest process's `SESSION_PREFIX`, and the clean-up deletes
exactly the keys under it (SCAN + DEL), so a database shared with a developer's own site, or with
another test run, keeps everything else.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

URL_VARIABLES = ("AGENTOS_TEST_REDIS_URL", "REDIS_URL")

# One per pytest process: every Redis key of this test run starts with it.
SESSION_PREFIX = f"agentos-test:{uuid.uuid4().hex[:12]}:"

# Characters that are literal in a SCAN MATCH pattern (no `*?[]\`), so a prefix is its own pattern.
_LITERAL = re.compile(r"[A-Za-z0-9:._-]+")


def configured_redis_url() -> str:
    """The Redis URL the environment gives the tests, or "" (none)."""
    for name in URL_VARIABLES:
        if value := os.environ.get(name, "").strip():
            return value
    return ""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI runs every Redis test")
    pytest.skip(reason)


def redis_url_or_skip() -> str:
    """The configured URL once Redis answers there; otherwise skip the test (fail it with CI=true)."""
    import redis

    url = configured_redis_url()
    if not url:
        _unavailable("no Redis for the tests: set AGENTOS_TEST_REDIS_URL (or REDIS_URL)")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis does not answer at {url} (AGENTOS_TEST_REDIS_URL or REDIS_URL): {exc}")
    finally:
        client.close()
    return url


def delete_keys(url: str, prefix: str) -> int:
    """Delete the keys of `url`'s database that start with `prefix` (SCAN + DEL: never a flush);
    how many there were."""
    import redis

    if not _LITERAL.fullmatch(prefix) or not prefix.startswith(SESSION_PREFIX):
        raise ValueError(f"not a prefix of this test run: {prefix!r}")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            batch.append(key)
            if len(batch) == 500:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()


@dataclass(frozen=True)
class RedisNamespace:
    """A test's share of the test Redis: its URL and the prefix all of the test's keys carry."""

    url: str
    prefix: str

    def client(self) -> Any:
        """A redis-py client of the test database (close it, or let the namespace's end do so)."""
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def keys(self) -> list[bytes]:
        """The keys under this namespace's prefix, now."""
        with self.client() as client:
            return sorted(client.scan_iter(match=f"{self.prefix}*", count=500))


@contextmanager
def redis_namespace(label: str) -> Iterator[RedisNamespace]:
    """A fresh prefix on the test Redis (skipping the test when there is none) whose keys are deleted
    at the end, whatever happened."""
    url = redis_url_or_skip()
    namespace = RedisNamespace(url=url, prefix=f"{SESSION_PREFIX}{label}-{uuid.uuid4().hex[:8]}:")
    try:
        yield namespace
    finally:
        delete_keys(url, namespace.prefix)
