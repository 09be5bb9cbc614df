from django.apps import AppConfig


class TelemetryAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "telemetry_app"
    verbose_name = "Telemetry"

    def ready(self) -> None:
        # System checks only: nothing here touches the database. The launch event is recorded
        # lazily, with the first run this process records (telemetry_app.services).
        from telemetry_app import checks  # noqa: F401
