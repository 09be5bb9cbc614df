"""The apps' pages (not the API): mount with `path("", include("agents_app.page_urls"))`."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from agents_app.views import chat_page

app_name = "agents_pages"

urlpatterns = [
    path("chat/", chat_page, name="chat"),
    # Any active user signs in here (the admin's login page admits staff only).
    path(
        "chat/login/",
        auth_views.LoginView.as_view(
            template_name="agents_app/login.html",
            redirect_authenticated_user=True,
            next_page=reverse_lazy("agents_pages:chat"),
        ),
        name="login",
    ),
    path("chat/logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("agents_pages:login")), name="logout"),
]
