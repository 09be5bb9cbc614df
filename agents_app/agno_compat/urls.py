"""agno AgentOS's routes (no trailing slashes, as agno's clients send them).

Mount with `path(url_prefix(), include("agents_app.agno_compat.urls"))` (see agentos_site/urls.py);
clients then use `<site>/<prefix>` as their AgentOS base URL. Ids are matched as plain strings and
checked in the views, so an id that cannot exist is a JSON 404 like any unknown one.
"""

from django.urls import path, re_path

from agents_app.agno_compat import continue_views, eval_views, observe_views, views
from agents_app.agno_compat.schema import OpenApiView
from agents_app.engine.protocol import KINDS

app_name = "agno_compat"

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("config", views.ConfigView.as_view(), name="config"),
    path("agents", views.AgentListView.as_view(), name="agents"),
    path("agents/<slug:agent_id>", views.AgentDetailView.as_view(), name="agent"),
    path("teams", views.TeamListView.as_view(), name="teams"),
    path("teams/<str:team_id>", views.TeamDetailView.as_view(), name="team"),
    path("workflows", views.WorkflowListView.as_view(), name="workflows"),
    path("workflows/<str:workflow_id>", views.WorkflowDetailView.as_view(), name="workflow"),
    # One run view and one cancel view for every kind; the kind comes from the route.
    *(
        path(f"{kind}s/<slug:{kind}_id>/runs", views.RunView.for_kind(kind).as_view(), name=f"{kind}-runs")
        for kind in KINDS
    ),
    *(
        path(
            f"{kind}s/<str:component_id>/runs/<str:run_id>/cancel",
            views.RunCancelView.as_view(),
            {"kind": kind},
            name=f"{kind}-run-cancel",
        )
        for kind in KINDS
    ),
    # A paused run goes on (docs/human-in-the-loop.md): an agent's, a team's or a workflow's paused by a child.
    path(
        "agents/<str:agent_id>/runs/<str:run_id>/continue",
        continue_views.RunContinueView.as_view(),
        name="agent-run-continue",
    ),
    path(
        "teams/<str:team_id>/runs/<str:run_id>/continue",
        continue_views.TeamRunContinueView.as_view(),
        name="team-run-continue",
    ),
    path(
        "workflows/<str:workflow_id>/runs/<str:run_id>/continue",
        continue_views.WorkflowRunContinueView.as_view(),
        name="workflow-run-continue",
    ),
    path("sessions", views.SessionListView.as_view(), name="sessions"),
    path("sessions/<str:session_id>", views.SessionDetailView.as_view(), name="session"),
    path("sessions/<str:session_id>/rename", views.SessionRenameView.as_view(), name="session-rename"),
    path("sessions/<str:session_id>/runs", views.SessionRunsView.as_view(), name="session-runs"),
    path("sessions/<str:session_id>/runs/<str:run_id>", views.SessionRunView.as_view(), name="session-run"),
    path("memories", views.MemoryListView.as_view(), name="memories"),
    path("memories/<str:memory_id>", views.MemoryDetailView.as_view(), name="memory"),
    path("memory_topics", views.MemoryTopicsView.as_view(), name="memory-topics"),
    # Evals (docs/evals.md#agnos-api).
    path("eval-runs", eval_views.EvalRunListView.as_view(), name="eval-runs"),
    path("eval-runs/<str:eval_run_id>", eval_views.EvalRunDetailView.as_view(), name="eval-run"),
    # agno parity (issue 20): run previews, a component's runs, /info, memory statistics.
    path("sessions/<str:session_id>/run-previews", views.SessionRunPreviewsView.as_view(), name="session-run-previews"),
    *(
        path(
            f"{kind}s/<str:{kind}_id>/runs/<str:run_id>",
            views.ComponentRunDetailView.as_view(),
            {"kind": kind},
            name=f"{kind}-run",
        )
        for kind in KINDS
    ),
    *(
        path(
            f"{kind}s/<str:{kind}_id>/sessions/<str:session_id>/fork",
            views.SessionForkView.as_view(),
            {"kind": kind},
            name=f"{kind}-session-fork",
        )
        for kind in ("agent", "team")  # agno forks agent and team sessions
    ),
    path("info", views.InfoView.as_view(), name="info"),
    path("databases/<str:db_id>/migrate", views.DatabaseMigrateView.as_view(), name="database-migrate"),
    path("user_memory_stats", views.UserMemoryStatsView.as_view(), name="user-memory-stats"),
    path("optimize-memories", views.OptimizeMemoriesView.as_view(), name="optimize-memories"),
    # Metrics and traces (docs/traces-and-metrics.md).
    path("metrics", observe_views.MetricsView.as_view(), name="metrics"),
    path("metrics/refresh", observe_views.MetricsRefreshView.as_view(), name="metrics-refresh"),
    path("metrics/refresh/status", observe_views.MetricsRefreshStatusView.as_view(), name="metrics-refresh-status"),
    path("traces", observe_views.TraceListView.as_view(), name="traces"),
    path("traces/filter-schema", observe_views.TraceFilterSchemaView.as_view(), name="traces-filter-schema"),
    path("traces/search", observe_views.TraceSearchView.as_view(), name="traces-search"),
    path("traces/<str:trace_id>", observe_views.TraceDetailView.as_view(), name="trace"),
    path("trace_session_stats", observe_views.TraceSessionStatsView.as_view(), name="trace-session-stats"),
    # Anything else under the prefix: FastAPI's JSON 404 (with our code), as agno's server answers.
    # This API's OpenAPI document (agno's server serves its own at /openapi.json).
    path("openapi.json", OpenApiView.as_view(routes=__name__), name="openapi"),
    re_path(r"", views.not_found),
]
