"""`Client`: the telemetry API over httpx, with a timeout on every request.

    with Client.from_settings() as client:
        client.post_batch(body)   # raises UploadError(retryable=...) on any failure

Retrying is the caller's business (the flush backs off on the batch's rows); the client sends one
request per call and says whether a failure is worth retrying: connection errors, timeouts, 408,
425, 429 and 5xx are; 401/403/404 are too (a key or URL the operator will fix); other 4xx are the
batch's own fault and are not.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson

from telemetry_app import __version__
from telemetry_app.conf import telemetry_base_url, telemetry_settings
from telemetry_app.routes import ApiRoutes

RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 425, 429})


class UploadError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Client:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"agentos-django-telemetry/{__version__}", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, *, transport: httpx.BaseTransport | None = None) -> Client:
        return cls(
            base_url=telemetry_base_url(),
            api_key=str(telemetry_settings.TELEMETRY_API_KEY or ""),
            timeout=float(telemetry_settings.TELEMETRY_TIMEOUT_SECONDS),
            transport=transport,
        )

    def post_batch(self, batch: dict[str, Any] | bytes, *, compress: bool = False) -> dict[str, Any]:
        """POST one batch to the collector; its JSON answer on 2xx, else UploadError."""
        body = batch if isinstance(batch, bytes) else orjson.dumps(batch)
        headers = {}
        if compress:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self._http.post(ApiRoutes.BATCHES, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise UploadError(f"timed out: {type(exc).__name__}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise UploadError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                return {}
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
        detail = response.text[:300].replace("\n", " ")
        raise UploadError(f"HTTP {response.status_code}: {detail}", retryable=retryable, status=response.status_code)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
