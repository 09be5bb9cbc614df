"""The admin of scoped API tokens (sessions_app.models.ApiToken; docs/api.md#api-tokens): staff
create a token for any user (the token is shown once, on the page after "Save", and never stored),
see every token with its scope, expiry and last use, and revoke tokens (an action; the rows stay).
The scope lists offer the slugs of existing agents, teams and workflows, hence this module lives in
agents_app, not beside the model."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from agents_app.models import Agent, Team, Workflow
from sessions_app.models import ApiToken
from sessions_app.tokens import default_expiry, token_issue, token_revoke

_SCOPES = {"agents": Agent, "teams": Team, "workflows": Workflow}


class ApiTokenAdminForm(forms.ModelForm):
    agents = forms.MultipleChoiceField(required=False, widget=FilteredSelectMultiple("agents", is_stacked=False))
    teams = forms.MultipleChoiceField(required=False, widget=FilteredSelectMultiple("teams", is_stacked=False))
    workflows = forms.MultipleChoiceField(
        required=False,
        widget=FilteredSelectMultiple("workflows", is_stacked=False),
        help_text="None chosen in all three lists: every agent, team and workflow the user may use.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name", "read_only", "agents", "teams", "workflows", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field, model in _SCOPES.items():
            slugs = list(model.objects.order_by("slug").values_list("slug", flat=True))
            # A slug the token lists whose runnable is gone (or renamed) stays listed, so saving the
            # form does not widen the token by dropping it.
            current = [s for s in (getattr(self.instance, field, None) or []) if s not in slugs]
            self.fields[field].choices = [(s, s) for s in [*slugs, *current]]
        if self.instance.pk is None:
            self.fields["expires_at"].initial = default_expiry()
            self.fields["expires_at"].help_text = "Empty: never expires."

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and self.instance.pk is None and value <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return value


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenAdminForm
    list_display = ["name", "user", "prefix", "scope", "read_only", "state", "expires_at", "last_used_at", "created_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    raw_id_fields = ["user"]
    readonly_fields = ["prefix", "last_used_at", "revoked_at", "created_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        # A token's owner never changes (the token would change hands unseen).
        return [*self.readonly_fields, "user"] if obj is not None else self.readonly_fields

    @admin.display(description="may use")
    def scope(self, obj: ApiToken) -> str:
        if not obj.restricted:
            return "everything"
        return "; ".join(f"{field}: {', '.join(getattr(obj, field))}" for field in _SCOPES if getattr(obj, field))

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "live"

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token=token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new token: its secret is drawn here and shown once by response_add (never stored, and
        # never put in a message, which would keep it in the session or a cookie).
        request._api_token_secret = token_issue(obj)  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(request, "_api_token_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        opts = self.model._meta
        response = TemplateResponse(
            request,
            "admin/agents_app/apitoken_created.html",
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "original": obj,
                "token": secret,
                "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
                "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
                "title": "API token created",
            },
        )
        response["Cache-Control"] = "no-store"
        return response
