from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from agents_app.agno_compat import url_prefix as agno_url_prefix
from sessions_app.api_base import api_not_found

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("admin/", admin.site.urls),
    # /healthz (the process answers) and /readyz (its dependencies do): no auth, JSON (docs/deployment.md#health).
    path("", include("agents_app.health_urls")),
    path("", include("agents_app.page_urls")),
    path("api/", include("agents_app.urls")),
    path("api/", include("sessions_app.urls")),
    # The telemetry collector (POST /api/telemetry/batches) and the staff dashboard (/telemetry/dashboard/).
    path("", include("telemetry_app.urls")),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),  # anything else under /api/: a JSON 404, not an HTML page
]

# agno AgentOS's HTTP API (AGENTOS["AGNO_COMPAT_PREFIX"], default /os/), so agno's clients work unchanged.
if (agno_prefix := agno_url_prefix()) is not None:
    urlpatterns.append(path(agno_prefix, include("agents_app.agno_compat.urls")))
