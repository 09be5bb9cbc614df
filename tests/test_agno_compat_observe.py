"""agno's own AgentOSClient against a live server for the metrics and traces methods (get_metrics,
refresh_metrics in the foreground and in the background with get_metrics_refresh_status,
get_traces, get_trace, get_trace_session_stats, search_traces): agno's pydantic models parse every
answer, and another user sees none of alice's traces."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from agno.client import AgentOSClient
from agno.os.routers.traces.schemas import TraceSearchGroupBy
from agno.utils.http import aclose_default_clients

from tests.test_agno_compat_client import site  # noqa: F401 - the live server fixture

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(site):  # noqa: F811
    yield AgentOSClient(base_url=site["base"], timeout=20)
    await aclose_default_clients()


async def test_traces_and_metrics_through_agnos_client(client, site):  # noqa: F811
    run = await client.run_agent("demo", "what is 6*7?", headers=site["alice"])
    traces = await client.get_traces(headers=site["alice"])
    assert traces.meta.total_count >= 1
    summary = next(t for t in traces.data if t.run_id == run.run_id)
    assert summary.status == "OK" and summary.agent_id == "demo" and summary.total_spans >= 3
    detail = await client.get_trace(summary.trace_id, headers=site["alice"])
    root = detail.tree[0]
    assert root.type == "AGENT" and {s.type for s in root.spans or []} >= {"LLM", "TOOL"}
    tool = next(s for s in root.spans if s.type == "TOOL")
    node = await client.get_trace(summary.trace_id, span_id=tool.id, headers=site["alice"])
    assert node.name == "calculator" and node.status == "OK"
    stats = await client.get_trace_session_stats(headers=site["alice"])
    assert any(s.session_id == run.session_id for s in stats.data)
    found = await client.search_traces(
        filter_expr={"op": "EQ", "key": "run_id", "value": run.run_id}, headers=site["alice"]
    )
    assert [t.run_id for t in found.data] == [run.run_id]
    by_session = await client.search_traces(group_by=TraceSearchGroupBy.SESSION, headers=site["alice"])
    assert any(s.session_id == run.session_id for s in by_session.data)
    # mallory sees none of it.
    assert (await client.get_traces(headers=site["mallory"])).data == []
    with pytest.raises(httpx.HTTPStatusError) as hidden:
        await client.get_trace(summary.trace_id, headers=site["mallory"])
    assert hidden.value.response.status_code == 404

    days = await client.refresh_metrics(headers=site["alice"])
    assert isinstance(days, list) and days[0].agent_runs_count >= 1 and days[0].users_count == 1
    metrics = await client.get_metrics(headers=site["alice"])
    assert metrics.metrics[0].model_metrics and metrics.updated_at is not None
    started = await client.refresh_metrics(background=True, headers=site["alice"])
    assert started.status in ("started", "already_running")
    for _ in range(100):
        status = await client.get_metrics_refresh_status(headers=site["alice"])
        if status.status in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert status.status == "completed" and status.finished_at is not None
