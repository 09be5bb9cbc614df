from django.apps import AppConfig


class TelemetryAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry_app"
    verbose_name = "Telemetry"
