from importlib import import_module

from django.apps import AppConfig


class AgentsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents_app"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Tools register themselves on import; importing the configured modules here means the
        # admin and the engine always see the same registry, in every process.
        from sessions_app.conf import agentos_settings

        for module in agentos_settings.TOOL_MODULES:
            import_module(module)
        for module in agentos_settings.STEP_MODULES:
            import_module(module)
        # Background hook executions in the Prometheus metrics (read at scrape time).
        from agents_app.hooks.executions import hook_metrics
        from telemetry_app.metrics import register_reading

        register_reading(hook_metrics)

        # `celery worker` and `celery beat` processes write heartbeats that /readyz reads.
        from agents_app.health import celery_heartbeats_connect

        celery_heartbeats_connect()

        # `manage.py check`: invalid encryption keys, model configs with no key or an unreadable one.
        from django.core import checks

        from agents_app.checks import check_encryption_keys, check_model_keys, check_rate_limits

        checks.register(check_encryption_keys, checks.Tags.security, "agentos")
        checks.register(check_model_keys, "agentos")
        checks.register(check_rate_limits, "agentos")

        # CORS is django-cors-headers'; the deprecated agno origins setting still feeds it (agents_app.cors).
        from agents_app import cors

        cors.connect()
        checks.register(cors.check_deprecated_cors_setting, "agentos")

        # Restricted agents, teams and workflows (agents_app.access) narrow every request's scope.
        from agents_app.access import denied_for
        from sessions_app.access import set_denied_source

        set_denied_source(denied_for)
