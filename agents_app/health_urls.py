"""Health endpoints for load balancers and orchestrators: `path("", include("agents_app.health_urls"))`
serves `/healthz` and `/readyz` (agents_app.health_views)."""

from django.urls import path

from agents_app.health_views import healthz, readyz

app_name = "agents_health"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
