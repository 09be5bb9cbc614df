"""`/api/tokens/`: a user's scoped API tokens (sessions_app.tokens; docs/api.md#api-tokens).

Create one (the token is in that answer only), list them, see one, revoke one. A token is managed
with a password session or a DRF token (`/api/auth/token/`), never with another scoped token: one
may only revoke itself (even a read-only one), so a leaked token can be killed by whoever holds it
and cannot mint a longer-lived or wider one.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.models import Agent, Team, Workflow
from sessions_app.access import allowed_for
from sessions_app.api_base import BODY_ERRORS, StrictInputMixin, error_responses
from sessions_app.models import ApiToken
from sessions_app.tokens import (
    TokenCannotManageTokens,
    default_expiry,
    latest_expiry,
    token_create,
    token_list_for_user,
    token_revoke,
)

UUID_REGEX = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAX_SLUGS = 100
_SCOPE_MODELS = {"agents": Agent, "teams": Team, "workflows": Workflow}


def _slugs(what: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.SlugField(max_length=100),
        max_length=MAX_SLUGS,
        default=list,
        help_text=f"Slugs of the {what} the token may list, show and run (none in all three lists: every one).",
    )


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as listed: never the token itself, only its first characters (`prefix`)."""

    agents = serializers.ListField(child=serializers.CharField(), read_only=True)
    teams = serializers.ListField(child=serializers.CharField(), read_only=True)
    workflows = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "read_only",
            "agents",
            "teams",
            "workflows",
            "expires_at",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The token: shown in this answer only, never again. Keep it secret.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What the token is for, e.g. 'support widget'.")
    read_only = serializers.BooleanField(
        default=False, help_text="Reads only: no runs, no changes (it may still revoke itself)."
    )
    agents = _slugs("agents")
    teams = _slugs("teams")
    workflows = _slugs("workflows")
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When it stops working. Omitted: after the site's default lifetime (90 days unless changed); "
        "null: never (unless the site sets a longest lifetime).",
    )

    def validate_expires_at(self, value: Any) -> Any:
        now = timezone.now()
        latest = latest_expiry(now)
        if value is None:
            if latest is not None:
                raise serializers.ValidationError(f"Tokens must expire, by {latest.isoformat()} at the latest.")
            return None
        if value <= now:
            raise serializers.ValidationError("Must be in the future.")
        if latest is not None and value > latest:
            raise serializers.ValidationError(f"Must be by {latest.isoformat()} at the latest.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Every slug names an agent, team or workflow the user can see (staff: any; others: active ones)."""
        request = self.context["request"]
        user = request.user
        # What the user may use (agents_app.access): a restricted runnable they are not granted is
        # unknown here too, so a token request does not reveal that it exists.
        allowed = allowed_for(request.auth, user)
        errors: dict[str, list[str]] = {}
        for field, model in _SCOPE_MODELS.items():
            wanted = set(attrs.get(field) or [])
            if not wanted:
                continue
            kind = model._meta.model_name
            rows = model.objects.filter(allowed.component_q(kind), slug__in=wanted)
            if not user.is_staff:
                rows = rows.filter(is_active=True)
            unknown = sorted(wanted - set(rows.values_list("slug", flat=True)))
            if unknown:
                errors[field] = [f"No {model._meta.verbose_name} with id {slug!r}." for slug in unknown]
        if errors:
            raise serializers.ValidationError(errors)
        if "expires_at" not in attrs:
            attrs["expires_at"] = default_expiry()
        return attrs


class TokenPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100


TOKEN_ID = OpenApiParameter("token_id", OpenApiTypes.UUID, OpenApiParameter.PATH, pattern=f"^{UUID_REGEX}$")
_403 = (
    "A scoped API token cannot create tokens or revoke another one (`token_cannot_manage_tokens`); a "
    "read-only one changes nothing (`token_read_only`); cookie authentication without a CSRF token."
)


@extend_schema_view(
    list=extend_schema(
        summary="List my API tokens",
        description="Tokens not revoked, newest first (expired ones too); never the tokens themselves.",
        responses={200: ApiTokenSerializer, **error_responses(401, 404, e404="No such page.")},
    ),
    retrieve=extend_schema(
        summary="Get one of my API tokens",
        parameters=[TOKEN_ID],
        responses={200: ApiTokenSerializer, **error_responses(401, 404)},
    ),
    create=extend_schema(
        summary="Create an API token",
        description=(
            "The answer holds the token (`token`), this once: only its prefix and a digest are stored. Send it "
            "as `Authorization: Bearer <token>`. Optionally limited to some agents, teams and workflows (others "
            "answer 404, as if they did not exist) and to reads (`read_only`: no runs, no changes)."
        ),
        request=ApiTokenCreateSerializer,
        responses={
            201: ApiTokenCreatedSerializer,
            **error_responses(
                *BODY_ERRORS,
                401,
                403,
                409,
                e403=_403,
                e409="You have as many live tokens as the site allows (`token_limit_reached`).",
            ),
        },
    ),
    destroy=extend_schema(
        summary="Revoke one of my API tokens",
        description="It stops working at once (401 `token_revoked`). A scoped token may revoke itself only.",
        parameters=[TOKEN_ID],
        responses={204: None, **error_responses(401, 403, 404, e403=_403)},
    ),
)
class ApiTokenViewSet(
    StrictInputMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = ApiTokenSerializer
    pagination_class = TokenPagination
    lookup_url_kwarg = "token_id"
    lookup_value_regex = UUID_REGEX
    queryset = ApiToken.objects.none()
    # A read-only token may revoke itself (agents_app.authentication lets DELETE through to here).
    read_only_token_methods = ("DELETE",)

    def get_queryset(self) -> Any:
        return token_list_for_user(user=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if isinstance(request.auth, ApiToken):
            raise TokenCannotManageTokens()
        serializer = ApiTokenCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, secret = token_create(user=request.user, **serializer.validated_data)
        token.token = secret  # type: ignore[attr-defined]
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        auth = self.request.auth
        if isinstance(auth, ApiToken) and auth.pk != instance.pk:
            raise TokenCannotManageTokens()
        token_revoke(token=instance)
