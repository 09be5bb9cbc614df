"""The data migration that turned agents' hook JSON fields into AgentHook rows (0006-0008), run for
real: the database is migrated back to before it, agents are stored the old way, then forward again."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("agents_app", "0006_hook_rows")]
AFTER = [("agents_app", "0007_hook_rows_data")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_schema() -> Any:
    """The historical apps at 0006 (JSON fields and the AgentHook table both there); the database
    is migrated to the latest state again afterwards, for the tests that follow."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    apps = migrate(BEFORE)
    yield apps
    migrate(latest)


def test_json_hooks_become_rows_and_back(old_schema):
    ModelConfig = old_schema.get_model("agents_app", "ModelConfig")
    Agent = old_schema.get_model("agents_app", "Agent")
    model = ModelConfig.objects.create(name="m", provider="offline", model_id="offline-demo")
    guarded = Agent.objects.create(
        slug="guarded",
        name="Guarded",
        model=model,
        pre_hooks=["input_check", "track_topics", "input_check", 7],  # a repeat and a non-string: skipped
        post_hooks=["vanished", "output_check"],  # no code registers "vanished": kept, for the operator to see
        hook_modes={"track_topics": "inline", "output_check": "sometimes", "agentos_session_summary": "inline"},
    )
    plain = Agent.objects.create(slug="plain", name="Plain", model=model)

    apps = migrate(AFTER)
    AgentHook = apps.get_model("agents_app", "AgentHook")
    rows = list(
        AgentHook.objects.order_by("agent_id", "-phase", "position").values_list(
            "agent_id", "phase", "position", "hook", "mode", "max_retries", "timeout_seconds", "team_id"
        )
    )
    assert rows == [
        (guarded.pk, "pre", 0, "input_check", "default", None, None, None),
        (guarded.pk, "pre", 1, "track_topics", "inline", None, None, None),
        (guarded.pk, "post", 0, "vanished", "default", None, None, None),
        (guarded.pk, "post", 1, "output_check", "default", None, None, None),
    ]
    Agent = apps.get_model("agents_app", "Agent")
    assert list(Agent.objects.order_by("slug").values_list("slug", "memory_hook_mode", "summary_hook_mode")) == [
        ("guarded", "default", "inline"),
        ("plain", "default", "default"),
    ]

    # Reversible: back to 0006, the rows are JSON again (what the old validation would have kept).
    apps = migrate(BEFORE)
    Agent = apps.get_model("agents_app", "Agent")
    back = Agent.objects.get(pk=guarded.pk)
    assert (back.pre_hooks, back.post_hooks) == (["input_check", "track_topics"], ["vanished", "output_check"])
    assert back.hook_modes == {"track_topics": "inline", "agentos_session_summary": "inline"}
    assert (Agent.objects.get(pk=plain.pk).pre_hooks, apps.get_model("agents_app", "AgentHook").objects.count()) == (
        [],
        0,
    )
