"""Create the benchmark's user, API token, model config and agent in the database of DATABASE_URL.

Run after `manage.py migrate`, with DATABASE_URL pointing at the throwaway database:

    DATABASE_URL=sqlite:////tmp/x/bench.sqlite3 python bench/setup_db.py --base-url http://127.0.0.1:PORT/v1

Prints one JSON line: {"token": ..., "agent": ..., "user_id": ...}. Idempotent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from agents_app.models import Agent, ModelConfig  # noqa: E402

AGENT_SLUG = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the scripted model server, e.g. http://127.0.0.1:8765/v1")
    parser.add_argument("--history-runs", type=int, default=3)
    args = parser.parse_args()

    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench", defaults={"email": "bench@example.com"})
    token, _ = Token.objects.get_or_create(user=user)
    model, _ = ModelConfig.objects.update_or_create(
        name="scripted",
        defaults={
            "provider": ModelConfig.Provider.OPENAI,
            "base_url": args.base_url,
            "model_id": "scripted-model",
            "api_key": "bench",
            "max_retries": 0,
            "timeout_seconds": 30.0,
        },
    )
    Agent.objects.update_or_create(
        slug=AGENT_SLUG,
        defaults={
            "name": "Benchmark agent",
            "model": model,
            "instructions": "You are a benchmark agent. Answer briefly.",
            "tools": [],
            "history_runs": args.history_runs,
        },
    )
    print(json.dumps({"token": token.key, "agent": AGENT_SLUG, "user_id": user.pk}))


if __name__ == "__main__":
    main()
