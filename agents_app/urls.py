"""Mount with `path("api/", include("agents_app.urls"))` (any prefix works)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents_app.apis import AgentRunApi, AgentViewSet, ModelConfigViewSet
from agents_app.apis_runs import RunCancelApi, RunEventsApi
from agents_app.apis_teams import TeamRunApi, TeamViewSet, WorkflowRunApi, WorkflowViewSet

app_name = "agents_app"

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("models", ModelConfigViewSet, basename="modelconfig")
router.register("teams", TeamViewSet, basename="team")
router.register("workflows", WorkflowViewSet, basename="workflow")

urlpatterns = [
    path("agents/<slug:agent_id>/runs", AgentRunApi.as_view(), name="agent-runs"),
    path("teams/<slug:team_id>/runs", TeamRunApi.as_view(), name="team-runs"),
    path("workflows/<slug:workflow_id>/runs", WorkflowRunApi.as_view(), name="workflow-runs"),
    path("runs/<uuid:run_id>/cancel", RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<uuid:run_id>/events", RunEventsApi.as_view(), name="run-events"),
    *router.urls,
]
