"""Hooks as rows (2/3): every agent's `pre_hooks` / `post_hooks` / `hook_modes` become AgentHook rows,
and the modes of the internal memory hooks become `memory_hook_mode` / `summary_hook_mode`.

Names are copied as stored, even ones no code registers any more (a run fails closed on them today,
and the admin shows them for the operator to fix); non-strings and repeats within a phase, which the
old validation refused, are skipped. Reversible: rows become the JSON lists again.
"""

from typing import Any

from django.db import migrations

MODES = ("inline", "background")
# The names agents_app.memory registers its internal hooks under (constants, not imports: a
# migration must not depend on code that may change).
MEMORY_HOOK = "agentos_memory"
SUMMARY_HOOK = "agentos_session_summary"


def hooks_json_to_rows(apps: Any, schema_editor: Any) -> None:
    Agent = apps.get_model("agents_app", "Agent")
    AgentHook = apps.get_model("agents_app", "AgentHook")
    rows = []
    for agent in Agent.objects.using(schema_editor.connection.alias).order_by("pk").iterator():
        modes = agent.hook_modes if isinstance(agent.hook_modes, dict) else {}
        for phase, names in (("pre", agent.pre_hooks), ("post", agent.post_hooks)):
            seen: set[str] = set()
            for name in names if isinstance(names, list) else []:
                if not isinstance(name, str) or not name or name in seen:
                    continue
                seen.add(name)
                mode = modes.get(name)
                rows.append(
                    AgentHook(
                        agent_id=agent.pk,
                        phase=phase,
                        position=len(seen) - 1,
                        hook=name[:100],
                        mode=mode if mode in MODES else "default",
                    )
                )
        memory_mode = modes.get(MEMORY_HOOK) if modes.get(MEMORY_HOOK) in MODES else "default"
        summary_mode = modes.get(SUMMARY_HOOK) if modes.get(SUMMARY_HOOK) in MODES else "default"
        if (memory_mode, summary_mode) != ("default", "default"):
            Agent.objects.using(schema_editor.connection.alias).filter(pk=agent.pk).update(
                memory_hook_mode=memory_mode, summary_hook_mode=summary_mode
            )
    AgentHook.objects.using(schema_editor.connection.alias).bulk_create(rows, batch_size=500)


def hooks_rows_to_json(apps: Any, schema_editor: Any) -> None:
    """The reverse: agents' rows (team rows have no JSON home and are dropped) back into the lists."""
    Agent = apps.get_model("agents_app", "Agent")
    AgentHook = apps.get_model("agents_app", "AgentHook")
    db = schema_editor.connection.alias
    for agent in Agent.objects.using(db).order_by("pk").iterator():
        hooks = list(AgentHook.objects.using(db).filter(agent_id=agent.pk).order_by("position", "pk"))
        modes = {row.hook: row.mode for row in hooks if row.mode in MODES}
        if agent.memory_hook_mode in MODES:
            modes[MEMORY_HOOK] = agent.memory_hook_mode
        if agent.summary_hook_mode in MODES:
            modes[SUMMARY_HOOK] = agent.summary_hook_mode
        Agent.objects.using(db).filter(pk=agent.pk).update(
            pre_hooks=[row.hook for row in hooks if row.phase == "pre"],
            post_hooks=[row.hook for row in hooks if row.phase == "post"],
            hook_modes=modes,
        )
    AgentHook.objects.using(db).all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0006_hook_rows"),
    ]

    operations = [
        migrations.RunPython(hooks_json_to_rows, hooks_rows_to_json),
    ]
