"""The Celery app of the site: settings from Django's under the CELERY namespace, tasks found in
every installed app (`agents_app.tasks`, `telemetry_app.tasks`).

Production: set CELERY_BROKER_URL (redis://… or amqp://…) and run a worker next to the web
processes: `celery -A agentos_site worker -B -l info` (-B embeds beat, which schedules the periodic
sweep of stalled hook executions; run beat once per deployment). With the default
CELERY_BROKER_URL=memory:// (embedded mode) no broker server and no worker process are needed:
each web process starts a worker thread of its own on first use (agents_app.embedded_worker).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")

app = Celery("agentos_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
