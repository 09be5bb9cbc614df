"""Mount with `path("api/", include("sessions_app.urls"))` (any prefix works)."""

from django.urls import path

from sessions_app.apis import (
    MemoryDetailApi,
    MemoryListApi,
    RunDetailApi,
    RunImageApi,
    SessionDetailApi,
    SessionEndApi,
    SessionListApi,
)

app_name = "sessions_app"

urlpatterns = [
    path("sessions/", SessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:session_id>/", SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<uuid:session_id>/end", SessionEndApi.as_view(), name="session-end"),
    path("runs/<uuid:run_id>/", RunDetailApi.as_view(), name="run-detail"),
    path("runs/<uuid:run_id>/images/<int:position>", RunImageApi.as_view(), name="run-image"),
    path("memories/", MemoryListApi.as_view(), name="memory-list"),
    path("memories/<uuid:memory_id>/", MemoryDetailApi.as_view(), name="memory-detail"),
]
