"""Mount with `path("api/", include("sessions_app.urls"))` (any prefix works)."""

from django.urls import path

from sessions_app.apis import RunDetailApi, SessionDetailApi, SessionListApi

app_name = "sessions_app"

urlpatterns = [
    path("sessions/", SessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:session_id>/", SessionDetailApi.as_view(), name="session-detail"),
    path("runs/<uuid:run_id>/", RunDetailApi.as_view(), name="run-detail"),
]
