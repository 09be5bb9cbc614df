"""Admin: collector senders (keys shown once, stored hashed), received events, and the buffer."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from sessions_app.admin import RecordAdminMixin
from telemetry_app.models import ReceivedEvent, TelemetryEvent, TelemetrySender
from telemetry_app.services import new_sender_key, telemetry_sender_rotate_key


class PayloadAdminMixin(RecordAdminMixin):
    """Events are written by the app only; staff read them, with the payload pretty-printed."""

    @admin.display(description="Payload")
    def data(self, obj: ReceivedEvent | TelemetryEvent) -> str:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', json.dumps(obj.payload, indent=2))


@admin.register(TelemetrySender)
class TelemetrySenderAdmin(admin.ModelAdmin):
    list_display = ["name", "key_prefix", "is_active", "last_seen_at", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "key_prefix"]
    readonly_fields = ["key_prefix", "last_seen_at", "created_at", "updated_at"]
    fields = ["name", "is_active", "key_prefix", "last_seen_at", "created_at", "updated_at"]
    actions = ["rotate_key"]

    def save_model(self, request: HttpRequest, obj: TelemetrySender, form: Any, change: bool) -> None:
        key = None if change else new_sender_key(obj)  # a new sender gets its key here, shown once
        super().save_model(request, obj, form, change)
        if key:
            self.message_user(
                request,
                f"The key of {obj.name} is {key} — copy it now, it is not shown again. "
                "The sending site sets it as AGENTOS_TELEMETRY_API_KEY.",
                messages.WARNING,
            )

    @admin.action(description="Rotate the key of the selected senders (the old keys stop working)")
    def rotate_key(self, request: HttpRequest, queryset: QuerySet[TelemetrySender]) -> None:
        for sender in queryset:
            key = telemetry_sender_rotate_key(sender=sender)
            self.message_user(request, f"New key of {sender.name}: {key} — copy it now.", messages.WARNING)


@admin.register(ReceivedEvent)
class ReceivedEventAdmin(PayloadAdminMixin, admin.ModelAdmin):
    list_display = ["event_id", "sender", "site_id", "kind", "event_type", "created_at", "received_at"]
    list_filter = ["kind", "event_type", "sender"]
    list_select_related = ["sender"]
    search_fields = ["event_id", "site_id"]
    date_hierarchy = "created_at"
    readonly_fields = ["sender", "event_id", "kind", "event_type", "site_id", "created_at", "received_at", "data"]
    exclude = ["payload"]


@admin.register(TelemetryEvent)
class TelemetryEventAdmin(PayloadAdminMixin, admin.ModelAdmin):
    """The outbox: what this site recorded and whether it was delivered."""

    list_display = ["id", "kind", "event_type", "created_at", "delivered_at", "attempts", "next_attempt_at"]
    list_filter = ["kind", "event_type", ("delivered_at", admin.EmptyFieldListFilter)]
    date_hierarchy = "created_at"
    readonly_fields = [*list_display, "last_error", "data"]
    exclude = ["payload", "claim"]
