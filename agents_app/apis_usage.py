"""A user's use and limits: GET /api/usage/ (quotas, agents_app.quotas)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_app.models import Quota
from agents_app.quotas import active_quotas, quota_component, user_usage
from sessions_app.access import allowed_for
from sessions_app.api_base import StrictInputMixin, error_responses

_MONEY = {"max_digits": 20, "decimal_places": 10, "coerce_to_string": False}


class QuotaComponentSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.CharField()


class QuotaUseSerializer(serializers.Serializer):
    name = serializers.CharField()
    scope = serializers.ChoiceField(choices=Quota.Scope.choices)
    period = serializers.ChoiceField(choices=Quota.Period.choices)
    component = QuotaComponentSerializer(
        allow_null=True, help_text="For a per-runnable quota: the agent, team or workflow it limits."
    )
    max_tokens = serializers.IntegerField(allow_null=True)
    max_cost = serializers.DecimalField(**_MONEY, allow_null=True)
    tokens = serializers.IntegerField(help_text="Used in the current period.")
    cost = serializers.DecimalField(**_MONEY)
    tokens_left = serializers.IntegerField(allow_null=True)
    cost_left = serializers.DecimalField(**_MONEY, allow_null=True)
    resets_at = serializers.DateTimeField()


class PeriodUseSerializer(serializers.Serializer):
    runs = serializers.IntegerField(help_text="Runs started (member and step runs not counted apart).")
    tokens = serializers.IntegerField()
    cost = serializers.DecimalField(**_MONEY)


class UsageSerializer(serializers.Serializer):
    today = PeriodUseSerializer()
    month = PeriodUseSerializer()
    quotas = QuotaUseSerializer(many=True)


class UsageApi(StrictInputMixin, APIView):
    """What I used today and this month, and the quotas that apply to me."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="My usage and limits",
        description=(
            "Your runs, tokens and cost today and this month (UTC), and every quota your runs count against "
            "(yours, the site's, and those of agents, teams and workflows), with what is used, what is left and "
            "when it resets. Cost is in the currency of the model configs' prices."
        ),
        responses={
            200: UsageSerializer,
            **error_responses(401),
        },
    )
    def get(self, request: Any) -> Response:
        allowed = allowed_for(request.auth, request.user)
        # A runnable's quota is shown only to whom may use it (and within the token's scope).
        quotas = [q for q in active_quotas() if q.scope != Quota.Scope.RUNNABLE or _permitted(q, allowed)]
        return Response(UsageSerializer(user_usage(user=request.user, quotas=quotas)).data)


def _permitted(quota: Quota, allowed: Any) -> bool:
    component = quota_component(quota)
    return component is not None and allowed.permits(component["kind"], component["id"])
