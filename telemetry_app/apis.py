"""The collector endpoint: `POST /api/telemetry/batches`, authenticated by a sender's key.

Answers: 202 with `{"received", "stored", "duplicates"}`; 400 for a body that is not a valid batch
(with the first errors); 401 without a valid key; 413 for a batch over the event or byte limit;
415 for a body that is not JSON. A refused batch stores nothing.
"""

from __future__ import annotations

import zlib
from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from pydantic import ValidationError
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api_base import exception_handler
from telemetry_app.conf import telemetry_settings
from telemetry_app.models import TelemetrySender
from telemetry_app.schemas import Batch
from telemetry_app.services import hash_key, telemetry_ingest_batch


class SenderKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <sender key>`; request.auth is the TelemetrySender."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, TelemetrySender] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid sender key.") from None
        sender = TelemetrySender.objects.filter(key_hash=hash_key(key), is_active=True).first()
        if sender is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive sender key.")
        return AnonymousUser(), sender

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="telemetry"'


class IsTelemetrySender(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, TelemetrySender)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The batch is too large."
    default_code = "payload_too_large"


def _read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed if gzip-encoded, refusing more than `limit` bytes either way."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"The batch is {length} bytes; this collector accepts at most {limit}.")
    body = request._request.body
    if len(body) > limit:
        raise PayloadTooLarge(f"The batch is over {limit} bytes.")
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise exceptions.UnsupportedMediaType(encoding, detail=f"Unsupported Content-Encoding {encoding!r}.")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise exceptions.ParseError("The gzip body is corrupt.") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The batch is over {limit} bytes uncompressed.")
    return data


def _openapi_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema as an OpenAPI 3.0 schema: `$defs` references resolved in place,
    `anyOf [X, null]` as a nullable X, `const` as a one-value enum, discriminator mappings dropped."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return walk(defs[ref.rsplit("/", 1)[1]])
        out = {k: walk(v) for k, v in node.items() if k != "discriminator"}
        if "const" in out:
            out["enum"] = [out.pop("const")]
        options = out.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            out.pop("anyOf")
            out = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **out, "nullable": True}
        return out

    return walk(schema)


class SenderKeyScheme(OpenApiAuthenticationExtension):
    target_class = "telemetry_app.apis.SenderKeyAuthentication"
    name = "telemetrySenderKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "A telemetry sender's key (TelemetrySender)."}


_ERROR = inline_serializer("TelemetryError", {"detail": serializers.CharField(), "code": serializers.CharField()})


class TelemetryBatchApi(APIView):
    # The one error map (sessions_app.errors): `code` next to `detail`, whatever the host's DRF settings.
    get_exception_handler = staticmethod(lambda: exception_handler)  # type: ignore[assignment]
    authentication_classes = [SenderKeyAuthentication]
    permission_classes = [IsTelemetrySender]
    parser_classes: list[Any] = []  # the body is read raw and validated by pydantic in one pass
    throttle_classes: list[Any] = []

    @extend_schema(
        operation_id="telemetry_batches_create",
        summary="Receive a batch of telemetry events (collector)",
        description=(
            "Validates the whole batch (envelope schema version 1; run events version 1, or 2 with `cost` and "
            "`cache_read_tokens`), then stores each event once per sender: events already "
            "received (a retried batch) are counted as duplicates and not stored again. A refused batch stores "
            "nothing. The body may be gzip-compressed (Content-Encoding: gzip)."
        ),
        request={"application/json": _openapi_schema(Batch.model_json_schema())},
        responses={
            202: inline_serializer(
                "TelemetryBatchAccepted",
                {name: serializers.IntegerField() for name in ("received", "stored", "duplicates")},
            ),
            **dict.fromkeys((400, 401, 413, 415), _ERROR),
        },
        tags=["telemetry"],
    )
    def post(self, request: Request) -> Response:
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise exceptions.UnsupportedMediaType(
                content_type or "(none)", detail="Send the batch as application/json."
            )
        body = _read_body(request, int(telemetry_settings.TELEMETRY_COLLECTOR_MAX_BYTES))
        try:
            batch = Batch.model_validate_json(body)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(map(str, e["loc"])), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)[:20]
            ]
            return Response(
                {
                    "detail": f"Invalid batch: {exc.error_count()} error(s); nothing was stored.",
                    "code": "invalid",
                    "errors": errors,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        limit = int(telemetry_settings.TELEMETRY_COLLECTOR_MAX_EVENTS)
        if len(batch.events) > limit:
            raise PayloadTooLarge(f"The batch has {len(batch.events)} events; this collector accepts at most {limit}.")
        result = telemetry_ingest_batch(sender=request.auth, batch=batch)
        return Response(
            {"received": result.received, "stored": result.stored, "duplicates": result.duplicates},
            status=status.HTTP_202_ACCEPTED,
        )
