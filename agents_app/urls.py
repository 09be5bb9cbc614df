"""Mount with `path("api/", include("agents_app.urls"))` (any prefix works)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents_app.apis import AgentRunApi, AgentViewSet, ModelConfigViewSet
from agents_app.apis_runs import RunCancelApi, RunEventsApi

app_name = "agents_app"

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("models", ModelConfigViewSet, basename="modelconfig")

urlpatterns = [
    path("agents/<slug:agent_id>/runs", AgentRunApi.as_view(), name="agent-runs"),
    path("runs/<uuid:run_id>/cancel", RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<uuid:run_id>/events", RunEventsApi.as_view(), name="run-events"),
    *router.urls,
]
