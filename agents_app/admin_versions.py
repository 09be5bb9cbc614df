"""The admin's versions of an agent, team or workflow (agents_app.versions): every save records a
version after the inlines are saved; the change page lists the latest versions; a version's page
shows its configuration and what changed since the version before; "restore" (change permission,
a confirm page, a POST with CSRF) writes it back, which records a new version. One mixin for the
three admins, so they cannot drift apart; each says only which kind it is (`version_kind`)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from agents_app.models import ConfigVersion
from agents_app.versions import (
    UnknownVersion,
    VersionNotRestorable,
    diff_html,
    get_version,
    pretty,
    previous_version,
    record_version,
    restore_version,
    versions_of,
)

CHANGE_PAGE_VERSIONS = 10


class VersionsAdminMixin:
    """Adds version recording to saves, the versions list to the change page, and the version and
    restore pages. Set `version_kind`."""

    version_kind = "agent"

    # The ModelAdmin provides these.
    opts: Any
    admin_site: Any

    def _version_url_name(self, what: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{what}"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/versions/<int:number>/restore/",
                view(self.version_restore_view),
                name=self._version_url_name("version_restore"),
            ),
            path(
                "<path:object_id>/versions/<int:number>/",
                view(self.version_view),
                name=self._version_url_name("version"),
            ),
            path("<path:object_id>/versions/", view(self.versions_view), name=self._version_url_name("versions")),
            *super().get_urls(),  # type: ignore[misc]
        ]

    # ---- recording ------------------------------------------------------------------------------

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """After the inlines: the whole configuration is saved, so this is the moment to version it."""
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        version = record_version(form.instance, author=request.user, source=ConfigVersion.Source.ADMIN)
        if version is not None:
            self.message_user(request, f"Recorded version {version.number}.", messages.INFO)  # type: ignore[attr-defined]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        try:
            pk = int(unquote(object_id))
        except ValueError:
            pk = None
        if pk is not None:
            rows = list(versions_of(self.version_kind, pk)[: CHANGE_PAGE_VERSIONS + 1])
            extra["config_versions"] = [self._row(pk, v) for v in rows[:CHANGE_PAGE_VERSIONS]]
            extra["config_versions_more"] = len(rows) > CHANGE_PAGE_VERSIONS
            extra["config_versions_url"] = reverse(f"admin:{self._version_url_name('versions')}", args=[pk])
        return super().change_view(request, object_id, form_url, extra)  # type: ignore[misc]

    def _row(self, pk: int, version: ConfigVersion) -> dict[str, Any]:
        return {
            "number": version.number,
            "author": version.author.get_username() if version.author is not None else "",
            "created_at": version.created_at,
            "source": version.get_source_display(),
            "restored_from": version.restored_from,
            "url": reverse(f"admin:{self._version_url_name('version')}", args=[quote(pk), version.number]),
        }

    # ---- pages ----------------------------------------------------------------------------------

    def _object(self, request: HttpRequest, object_id: str) -> Any:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404(f"No {self.version_kind} {object_id}.")
        if not self.has_view_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        return obj

    def _version(self, obj: Any, number: int) -> ConfigVersion:
        try:
            return get_version(self.version_kind, obj.pk, number)
        except UnknownVersion as exc:
            raise Http404(str(exc)) from None

    def _context(self, request: HttpRequest, obj: Any, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "kind": self.version_kind,
            "has_view_permission": True,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)]),
            "versions_url": reverse(f"admin:{self._version_url_name('versions')}", args=[quote(obj.pk)]),
        }

    def versions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object(request, object_id)
        context = self._context(request, obj, f"Versions of {obj.name}")
        context["rows"] = [self._row(obj.pk, v) for v in versions_of(self.version_kind, obj.pk)]
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agents_app/versions.html", context)

    def version_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        obj = self._object(request, object_id)
        version = self._version(obj, number)
        before = previous_version(version)
        context = self._context(request, obj, f"{obj.name}: version {version.number}")
        context.update(
            version=self._row(obj.pk, version),
            previous=before.number if before is not None else None,
            diff=diff_html(before, version),
            snapshot=pretty(version),
            can_restore=self.has_change_permission(request, obj),  # type: ignore[attr-defined]
            restore_url=reverse(
                f"admin:{self._version_url_name('version_restore')}", args=[quote(obj.pk), version.number]
            ),
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agents_app/version.html", context)

    def version_restore_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        """GET: what restoring would change, and a confirm button; POST: restore (change permission)."""
        obj = self._object(request, object_id)
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        version = self._version(obj, number)
        latest = versions_of(self.version_kind, obj.pk).order_by("-number").first()
        if request.method == "POST":
            try:
                new = restore_version(version, author=request.user)
            except VersionNotRestorable as exc:
                self.message_user(request, f"Version {number} cannot be restored: {exc}", messages.ERROR)  # type: ignore[attr-defined]
            else:
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    f"Restored version {number}: it is now version {new.number}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)])
                )
        context = self._context(request, obj, f"Restore version {version.number} of {obj.name}?")
        context.update(
            version=self._row(obj.pk, version),
            latest=latest.number if latest is not None else None,
            diff=diff_html(latest, version) if latest is not None else "",
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agents_app/version_restore.html", context)
