"""What authenticating with a scoped API token costs, against a DRF token: CPU and SQL statements
per request, in-process (docs/benchmarks.md#api-tokens).

1. Authentication alone: `BearerOrTokenAuthentication.authenticate` on a request with each kind of
   token (a DRF authtoken row; a scoped API token, its last use already recorded this minute, the
   steady state; the same when its last use is due, i.e. once a minute per token, with the UPDATE).
2. Whole requests through Django's test client (middleware, DRF, the view; a run's database work on
   this thread): `GET /api/agents/` and a non-streaming `POST /api/agents/<id>/runs` of an offline
   agent, with a DRF token, an unrestricted API token and one limited to that agent.

Tokens are cached per process for AUTH_CACHE_SECONDS (sessions_app.authcache), so in the steady
state a request authenticates with no SQL statement; `--auth-cache-seconds 0` measures without the
cache (a SELECT per request, as before it existed).

CPU is this process's (`time.process_time`, every thread), per call, the median of the rounds;
SQL statements are what CaptureQueriesContext sees, BEGIN/COMMIT/SAVEPOINT left out. Kinds are
alternated round by round, so drift on a shared machine hits them alike.

    .venv/bin/python bench/auth_overhead.py                 # a minute or so
    .venv/bin/python bench/auth_overhead.py --calls 5000 --requests 400
    .venv/bin/python bench/auth_overhead.py --auth-cache-seconds 0   # without the token cache
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentos_bench .venv/bin/python bench/auth_overhead.py

Without DATABASE_URL a throwaway SQLite database is made (and removed). A report, never a test gate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = None
if "DATABASE_URL" not in os.environ:
    _tmp = tempfile.TemporaryDirectory(prefix="agentos-auth-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp.name}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402

from agents_app.authentication import BearerOrTokenAuthentication  # noqa: E402
from agents_app.models import Agent, ModelConfig  # noqa: E402
from sessions_app.authcache import API, auth_cache_note_use  # noqa: E402
from sessions_app.models import ApiToken  # noqa: E402
from sessions_app.tokens import digest_of, token_create  # noqa: E402

_TX = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
AGENT = "auth-bench"


def _statements(queries: list[dict[str, Any]]) -> int:
    return sum(1 for q in queries if q["sql"].lstrip().split(None, 1)[0].upper() not in _TX)


def _setup() -> dict[str, str]:
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="auth-bench")
    model, _ = ModelConfig.objects.get_or_create(name="auth-bench", defaults={"provider": "offline"})
    Agent.objects.update_or_create(slug=AGENT, defaults={"name": "Auth bench", "model": model})
    Token.objects.filter(user=user).delete()
    ApiToken.objects.filter(user=user).delete()
    return {
        "DRF token": Token.objects.create(user=user).key,
        "API token": token_create(user=user, name="bench", expires_at=None)[1],
        "API token, scoped": token_create(user=user, name="bench scoped", agents=[AGENT], expires_at=None)[1],
        "API token, due": token_create(user=user, name="bench due", expires_at=None)[1],
    }


def _rounds(kinds: dict[str, Callable[[], Any]], *, rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    """Median CPU (µs) and SQL statements per call of each kind, over `rounds` alternated rounds."""
    cpu: dict[str, list[float]] = {name: [] for name in kinds}
    sql: dict[str, list[float]] = {name: [] for name in kinds}
    for call in kinds.values():  # warm-up
        call()
    for _ in range(rounds):
        for name, call in kinds.items():
            connection.queries_log.clear()  # it keeps 9000 queries at most; the count needs room
            with CaptureQueriesContext(connection) as captured:
                started = time.process_time()
                for _ in range(per_round):
                    call()
                spent = time.process_time() - started
            cpu[name].append(spent / per_round * 1e6)
            sql[name].append(_statements(captured.captured_queries) / per_round)
    return {name: {"cpu_us": statistics.median(cpu[name]), "sql": statistics.median(sql[name])} for name in kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="authentications of each kind")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests of each kind and path")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument(
        "--auth-cache-seconds", type=float, default=None, help="AUTH_CACHE_SECONDS (default: the site's, 5; 0: off)"
    )
    args = parser.parse_args()
    if args.auth_cache_seconds is not None:
        settings.AGENTOS = {**settings.AGENTOS, "AUTH_CACHE_SECONDS": args.auth_cache_seconds}
    cache_seconds = float(settings.AGENTOS.get("AUTH_CACHE_SECONDS", 5.0))
    tokens = _setup()
    auth = BearerOrTokenAuthentication()
    factory = APIRequestFactory()

    def authenticate(key: str) -> Callable[[], Any]:
        request = Request(factory.get("/api/agents/", HTTP_AUTHORIZATION=f"Bearer {key}"))
        return lambda: auth.authenticate(request)

    due_key = tokens.pop("API token, due")
    due_pk = ApiToken.objects.get(name="bench due").pk
    due_digest = digest_of(due_key)
    long_ago = timezone.now() - timedelta(days=1)

    def due() -> Any:
        # Its last use is a minute old: this call writes it (once a minute per token, in service).
        reset_only()
        return due_request()

    due_request = authenticate(due_key)

    def reset_only() -> Any:
        ApiToken.objects.filter(pk=due_pk).update(last_used_at=long_ago)
        auth_cache_note_use(API, due_digest, long_ago)  # what the cached row says too

    per_round = max(1, args.calls // 20)
    alone = _rounds(
        {
            "DRF token": authenticate(tokens["DRF token"]),
            "API token": authenticate(tokens["API token"]),
            "API token, last use due": due,
            "(the reset of last use, subtracted)": reset_only,
        },
        rounds=20,
        per_round=per_round,
    )
    reset = alone.pop("(the reset of last use, subtracted)")
    alone["API token, last use due"] = {
        "cpu_us": alone["API token, last use due"]["cpu_us"] - reset["cpu_us"],
        "sql": alone["API token, last use due"]["sql"] - reset["sql"],
    }

    clients = {name: Client(headers={"Authorization": f"Bearer {key}"}) for name, key in tokens.items()}

    def get_agents(client: Client) -> Callable[[], Any]:
        def call() -> None:
            response = client.get("/api/agents/")
            if response.status_code != 200:
                raise RuntimeError(f"GET {response.status_code}: {response.content[:300]!r}")

        return call

    def post_run(client: Client) -> Callable[[], Any]:
        def call() -> None:
            response = client.post(f"/api/agents/{AGENT}/runs", data={"message": "hi"}, content_type="application/json")
            if response.status_code != 200:
                raise RuntimeError(f"POST {response.status_code}: {response.content[:300]!r}")

        return call

    per_round = max(1, args.requests // 10)
    listing = _rounds({name: get_agents(c) for name, c in clients.items()}, rounds=10, per_round=per_round)
    running = _rounds({name: post_run(c) for name, c in clients.items()}, rounds=10, per_round=per_round)

    results = {"authenticate": alone, "GET /api/agents/": listing, "POST /api/agents/<id>/runs": running}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    cache = f"{cache_seconds:g} s (a token is read again when its entry is that old)" if cache_seconds else "off"
    print(f"database: {connection.vendor}; token cache: {cache}; medians of alternated rounds\n")
    for title, rows in results.items():
        base = rows["DRF token"]
        print(f"{title}")
        print(f"  {'credentials':<28} {'CPU/call':>10} {'vs DRF':>9} {'SQL/call':>9} {'vs DRF':>7}")
        for name, row in rows.items():
            print(
                f"  {name:<28} {row['cpu_us']:>8.0f}µs {row['cpu_us'] - base['cpu_us']:>+7.0f}µs "
                f"{row['sql']:>9.2f} {row['sql'] - base['sql']:>+7.2f}"
            )
        print()


if __name__ == "__main__":
    main()
