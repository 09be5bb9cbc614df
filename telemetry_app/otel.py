"""OpenTelemetry export of run traces (off by default; docs/traces-and-metrics.md).

With `AGENTOS["OTEL_TRACES"]` on, each finished top-level run's trace (telemetry_app.traces: the
run, its model requests, tool calls, hooks, member and step runs) is sent as OpenTelemetry spans
through the SDK's batching processor and OTLP/HTTP exporter, configured by the SDK's own
environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, ...). The trace id is the run id (the same id
`GET /os/traces/{id}` answers to); attributes follow OpenInference's names, as agno's tracing does
(`openinference.span.kind`, `input.value`, `llm.token_count.prompt`, `tool.name`, ...).

Off, it costs one settings read per run and imports nothing of the SDK. On, the trace is built
from the database after the run was stored, on a database thread, and the export itself runs in
the SDK's background thread: nothing is added to the run's own path.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any
from uuid import UUID

from telemetry_app.conf import telemetry_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_provider: Any = None
_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("agentos_otel_trace_id", default=None)

SPAN_KINDS = {"AGENT": "AGENT", "TEAM": "AGENT", "WORKFLOW": "CHAIN", "LLM": "LLM", "TOOL": "TOOL", "STEP": "CHAIN"}


def otel_enabled() -> bool:
    return bool(telemetry_settings.OTEL_TRACES)


def configure(*, exporter: Any = None, simple: bool = False) -> Any:
    """Install the tracer provider (once per process): the OTLP/HTTP exporter, or `exporter` (tests:
    an InMemorySpanExporter, with `simple=True` to export each span at once). Returns it."""
    global _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunIdGenerator(RandomIdGenerator):
        """The run's id as the trace id, so the exported trace and `/os/traces/{id}` match."""

        def generate_trace_id(self) -> int:
            wanted = _trace_id.get()
            return wanted if wanted is not None else super().generate_trace_id()

    with _lock:
        if _provider is not None and exporter is None:
            return _provider
        if _provider is not None:
            _provider.shutdown()
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        resource = Resource.create({"service.name": telemetry_settings.OTEL_SERVICE_NAME})
        provider = TracerProvider(resource=resource, id_generator=RunIdGenerator())
        provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter))
        _provider = provider
        return provider


def _ns(value: Any) -> int:
    return int(value.timestamp() * 1_000_000_000)


def export_run_trace(*, run_id: UUID) -> bool:
    """Build the trace of a finished top-level run from the database and hand its spans to the
    exporter (sync; call it on a database thread). Never raises: a failed export is logged."""
    try:
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace import Status, StatusCode

        from sessions_app.models import Run
        from telemetry_app.traces import build_traces

        run = Run.objects.select_related("agent", "team", "workflow").filter(pk=run_id, parent_run__isnull=True).first()
        if run is None:
            return False
        trace = build_traces([run])[0]
        tracer = configure().get_tracer("agentos.runs")
        token = _trace_id.set(run.pk.int)
        try:
            by_id: dict[str, Any] = {}
            for span in trace.spans:  # parents come before their children
                parent = by_id.get(span.parent_id) if span.parent_id else None
                context = otel_trace.set_span_in_context(parent) if parent is not None else None
                attributes: dict[str, Any] = {
                    "openinference.span.kind": SPAN_KINDS.get(span.type, span.type),
                    "agentos.span.type": span.type,
                }
                if span.input is not None:
                    attributes["input.value"] = span.input
                if span.output is not None:
                    attributes["output.value"] = span.output
                meta = span.metadata
                for key, name in (
                    ("run_id", "agno.run.id"),
                    ("session_id", "session.id"),
                    ("user_id", "user.id"),
                    ("agent_id", "agno.agent.id"),
                    ("team_id", "agno.team.id"),
                    ("workflow_id", "agno.workflow.id"),
                    ("model", "llm.model_name"),
                    ("model_provider", "llm.provider"),
                    ("input_tokens", "llm.token_count.prompt"),
                    ("output_tokens", "llm.token_count.completion"),
                    ("tool_name", "tool.name"),
                    ("cost", "agentos.cost"),
                ):
                    if meta.get(key) not in (None, ""):
                        attributes[name] = meta[key]
                otel_span = tracer.start_span(
                    span.name, context=context, attributes=attributes, start_time=_ns(span.start)
                )
                if span.status == "ERROR":
                    otel_span.set_status(Status(StatusCode.ERROR, span.error or "error"))
                elif span.status == "OK":
                    otel_span.set_status(Status(StatusCode.OK))
                otel_span.end(end_time=_ns(span.end))
                by_id[span.id] = otel_span
        finally:
            _trace_id.reset(token)
        return True
    except Exception:
        logger.exception("Could not export the trace of run %s", run_id)
        return False
