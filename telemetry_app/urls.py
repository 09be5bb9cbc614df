"""Mount at the site root: `path("", include("telemetry_app.urls"))`. The collector's path comes
from `telemetry_app.routes`, the one place the client and the server read it from."""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from telemetry_app.apis import TelemetryBatchApi
from telemetry_app.routes import ApiRoutes, PageRoutes
from telemetry_app.views import dashboard, metrics

app_name = "telemetry_app"

urlpatterns = [
    path(ApiRoutes.BATCHES.lstrip("/"), TelemetryBatchApi.as_view(), name="batches"),
    path(PageRoutes.DASHBOARD.lstrip("/"), dashboard, name="dashboard"),
    path("metrics", csrf_exempt(metrics), name="metrics"),
]
