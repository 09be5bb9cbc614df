from typing import Any

from django.apps import AppConfig, apps


class SessionsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sessions_app"
    label = "sessions_app"
    verbose_name = "Agent sessions"

    def ready(self) -> None:
        # The per-process cache of authenticated tokens (sessions_app.authcache): saving or deleting
        # a token or a user drops what this process cached of it (cache upkeep, not business logic).
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from sessions_app.models import ApiToken

        receivers: list[tuple[Any, Any, str]] = [
            (_api_token_changed, ApiToken, "api"),
            (_user_changed, get_user_model(), "user"),
        ]
        if apps.is_installed("rest_framework.authtoken"):
            from rest_framework.authtoken.models import Token, TokenProxy

            # TokenProxy: DRF's admin saves through it (signals name the proxy as their sender).
            receivers += [(_drf_token_changed, Token, "drf"), (_drf_token_changed, TokenProxy, "drf-proxy")]
        for receiver, sender, name in receivers:
            post_save.connect(receiver, sender=sender, weak=False, dispatch_uid=f"agentos-authcache-{name}-save")
            post_delete.connect(receiver, sender=sender, weak=False, dispatch_uid=f"agentos-authcache-{name}-delete")


def _api_token_changed(instance: Any, **kwargs: Any) -> None:
    from sessions_app.authcache import API, auth_cache_drop

    auth_cache_drop(API, instance.digest)


def _drf_token_changed(instance: Any, **kwargs: Any) -> None:
    from sessions_app.authcache import DRF, auth_cache_drop
    from sessions_app.tokens import digest_of

    auth_cache_drop(DRF, digest_of(instance.key))


def _user_changed(instance: Any, **kwargs: Any) -> None:
    from sessions_app.authcache import auth_cache_drop_user

    auth_cache_drop_user(instance.pk)
