"""What issue 18's checks add to a run: access per runnable, rate limits, quotas (and an
Idempotency-Key), in SQL statements and CPU per run, through the REST edge in-process.

Two blocks of runs of the offline demo model (no network), each after a warm-up:
  off: nothing restricted, no rate limits, no quota, no Idempotency-Key;
  on:  another agent restricted to a group the user is in (so the user's groups are read), rate
       limits per user and per runnable (high enough never to refuse), a per-user and a site quota
       (tokens and cost), and a fresh Idempotency-Key on every request.
It prints statements per run (with what differs) and the median CPU of each block.

    .venv/bin/python bench/limits_overhead.py              # 60 runs per block, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentos_bench .venv/bin/python bench/limits_overhead.py

Without DATABASE_URL a throwaway SQLite database is made (and removed). A report, never a test gate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = None
if "DATABASE_URL" not in os.environ:
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-limits-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp.name}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from agents_app.models import Agent, ModelConfig, Quota  # noqa: E402

_TX = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _setup() -> tuple[Any, APIClient]:
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="limits-bench")
    model, _ = ModelConfig.objects.get_or_create(
        name="limits-offline", defaults={"provider": "offline", "model_id": "offline-demo"}
    )
    Agent.objects.update_or_create(slug="limits-demo", defaults={"name": "Demo", "model": model})
    Agent.objects.update_or_create(slug="limits-other", defaults={"name": "Other", "model": model})
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return user, client


def _switch(features: set[str], user: Any) -> None:
    other = Agent.objects.get(slug="limits-other")
    group, _ = Group.objects.get_or_create(name="limits-bench")
    Quota.objects.all().delete()
    user.groups.clear()
    other.access = "everyone"
    other.save()
    other.allowed_groups.clear()
    if "access" in features:
        user.groups.add(group)
        other.access = "restricted"
        other.save()
        other.allowed_groups.set([group])
    if "quotas" in features:
        Quota.objects.create(scope="user", period="day", max_tokens=10**12, max_cost=Decimal(10**6))
        Quota.objects.create(scope="site", period="month", max_tokens=10**12)
    cache.clear()


def _one(client: APIClient, idempotent: bool) -> tuple[list[str], float]:
    headers = {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex} if idempotent else {}
    with CaptureQueriesContext(connection) as ctx:
        cpu = time.process_time()
        r = client.post("/api/agents/limits-demo/runs", {"message": "hello there"}, format="json", **headers)
        cpu = time.process_time() - cpu
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.content[:300]!r}")
    sql = [q["sql"] for q in ctx.captured_queries if q["sql"].split(None, 1)[0].upper() not in _TX]
    return sql, cpu * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="runs per block")
    args = parser.parse_args()
    limits = {"USER": ["100000/min", "1000000/hour"], "RUNNABLE": ["100000/min"]}
    blocks = {
        "off": set(),
        "access": {"access"},
        "rate limits": {"rates"},
        "quotas": {"quotas"},
        "access + rate limits + quotas": {"access", "rates", "quotas"},
        "Idempotency-Key": {"idempotency"},
        "all": {"access", "rates", "quotas", "idempotency"},
    }
    results = {}
    user, client = _setup()
    for _ in range(2):  # alternate the blocks twice: CPU drifts on a shared machine
        for label, features in blocks.items():
            _switch(features, user)
            rates = limits if "rates" in features else {"USER": [], "RUNNABLE": []}
            with override_settings(AGENTOS={**settings.AGENTOS, "RUN_RATE_LIMITS": rates}):
                for _ in range(3):  # warm-up: caches, the quota and access rows
                    _one(client, "idempotency" in features)
                runs = [_one(client, "idempotency" in features) for _ in range(args.runs // 2)]
            results.setdefault(label, []).extend(runs)
    print(f"database: {connection.vendor}; {args.runs} runs per block; REST POST …/runs, offline model")
    print()
    base_cpu = statistics.median(c for _, c in results["off"])
    base_sql = len(results["off"][-1][0])
    print("| block | SQL statements per run | over off | CPU ms per run (median) | over off |")
    print("|---|--:|--:|--:|--:|")
    for label, runs in results.items():
        counts = sorted({len(sql) for sql, _ in runs})
        cpu = statistics.median(c for _, c in runs)
        extra = max(counts) - base_sql
        print(f"| {label} | {', '.join(map(str, counts))} | {extra:+d} | {cpu:.2f} | {cpu - base_cpu:+.2f} |")


if __name__ == "__main__":
    main()
