"""Mount with `path("api/", include("agents_app.urls"))` (any prefix works)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from agents_app.apis import AgentViewSet, ModelConfigViewSet, RunApi, TeamViewSet, WorkflowViewSet
from agents_app.apis_approvals import RunContinueApi
from agents_app.apis_evals import EvalCaseViewSet, EvalCompareApi, EvalRunEventsApi, EvalRunViewSet, EvalSuiteViewSet
from agents_app.apis_runs import RunCancelApi, RunEventsApi
from agents_app.apis_tokens import ApiTokenViewSet
from agents_app.apis_usage import UsageApi
from agents_app.apis_versions import VersionDetailApi, VersionListApi
from agents_app.engine.protocol import KINDS

app_name = "agents_app"

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("models", ModelConfigViewSet, basename="modelconfig")
router.register("teams", TeamViewSet, basename="team")
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("evals", EvalSuiteViewSet, basename="evalsuite")
router.register(r"evals/(?P<suite>[-a-zA-Z0-9_]+)/cases", EvalCaseViewSet, basename="evalcase")
_eval_runs = EvalRunViewSet.as_view({"get": "list", "post": "create"})
_eval_run = EvalRunViewSet.as_view({"get": "retrieve", "delete": "destroy"})
_eval_run_cancel = EvalRunViewSet.as_view({"post": "cancel"})

urlpatterns = [
    # One run view; the kind comes from the URL.
    *(path(f"{kind}s/<slug:{kind}_id>/runs", RunApi.for_kind(kind).as_view(), name=f"{kind}-runs") for kind in KINDS),
    path("runs/<uuid:run_id>/cancel", RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<uuid:run_id>/events", RunEventsApi.as_view(), name="run-events"),
    path("runs/<uuid:run_id>/continue", RunContinueApi.as_view(), name="run-continue"),
    path("usage/", UsageApi.as_view(), name="usage"),
    # Configuration versions (staff); the kind comes from the URL.
    *(
        path(f"{kind}s/<slug:{kind}_id>/versions/", VersionListApi.for_kind(kind).as_view(), name=f"{kind}-versions")
        for kind in KINDS
    ),
    *(
        path(
            f"{kind}s/<slug:{kind}_id>/versions/<int:number>",
            VersionDetailApi.for_kind(kind).as_view(),
            name=f"{kind}-version",
        )
        for kind in KINDS
    ),
    # Evals (docs/evals.md): a suite's eval runs, each case on Celery.
    path("evals/<slug:suite>/runs", _eval_runs, name="evalrun-list"),
    path("evals/<slug:suite>/compare", EvalCompareApi.as_view(), name="evalrun-compare"),
    path("evals/<slug:suite>/runs/<uuid:eval_run_id>", _eval_run, name="evalrun-detail"),
    path("evals/<slug:suite>/runs/<uuid:eval_run_id>/cancel", _eval_run_cancel, name="evalrun-cancel"),
    path("evals/<slug:suite>/runs/<uuid:eval_run_id>/events", EvalRunEventsApi.as_view(), name="evalrun-events"),
    *router.urls,
]
