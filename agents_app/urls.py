"""Mount with `path("api/", include("agents_app.urls"))` (any prefix works)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents_app.apis import AgentRunApi, AgentViewSet, ModelConfigViewSet

app_name = "agents_app"

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("models", ModelConfigViewSet, basename="modelconfig")

urlpatterns = [
    path("agents/<slug:agent_id>/runs", AgentRunApi.as_view(), name="agent-runs"),
    *router.urls,
]
