"""Agent memory: what an agent remembers about a user across sessions, and session summaries.

Three pieces, chosen per agent in the admin (Agent.memory_mode, Agent.session_summaries):

* **Agentic memory**: the model gets three tools (add_memory, update_memory, delete_memory) and
  the relevant memories, with their ids, in its instructions. The tools write at once, within the
  agent's memory scope only.
* **Automatic memory**: after each completed run, a memory manager asks a model (the agent's
  memory_model, else its own) which memories to add, update or delete given the exchange, as
  structured output, and applies them. It runs as the internal hook `agentos_memory`, so it gets
  what every hook gets: background on a Celery worker by default (retries, timeout, a
  HookExecution record, effects applied exactly once), inline when AGENTOS["HOOKS_BACKGROUND"] is
  "never" or the agent's memory_hook_mode says so (then the run streams MemoryUpdateStarted/Completed).
* **Session summaries**: when a session outgrows its history window, the internal hook
  `agentos_session_summary` folds the runs that left the window into the session's summary, which
  later runs get instead of those runs (SessionSummaryStarted/Completed when inline).

Memories go into the context bounded by the agent's memory_context_items and memory_context_chars;
the summary by AGENTOS["SESSION_SUMMARY_MAX_CHARS"].
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from agents_app.hooks.context import HookContext
from agents_app.hooks.registry import MEMORY_HOOK, POST, SUMMARY_HOOK, hook_registry
from agents_app.hooks.structured import ask_json, object_schema
from agents_app.tools.context import RunContext
from agents_app.tools.registry import ToolRegistry
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.models import Memory
from sessions_app.selectors import memories_for_context, memory_line
from sessions_app.services import MemoryOperation, memory_apply

if TYPE_CHECKING:
    from agents_app.models import Agent

logger = logging.getLogger(__name__)


def memory_scope_pk(agent: Agent) -> int | None:
    """The agent's pk when its memories are private to it, None when shared by the user's agents."""
    return agent.pk if agent.memory_scope == "agent" else None


async def _model_config(agent: Agent) -> Any:
    """The model for memory work: the agent's memory_model, else its own (read without a lazy
    foreign-key load, which async code may not do)."""
    if agent.memory_model_id is None:
        return agent.model
    from agents_app.models import ModelConfig

    config = await ModelConfig.objects.filter(pk=agent.memory_model_id).afirst()
    return config if config is not None else agent.model


# ---- what the model reads ------------------------------------------------------------------------

AGENTIC_INSTRUCTIONS = (
    "You can remember things about the user across conversations with the tools add_memory, "
    "update_memory and delete_memory. Save durable facts the user shares (preferences, personal "
    "details, goals); update or delete a memory when it changes or stops being true; never save "
    "secrets such as passwords."
)


def memory_section(lines: list[str], *, agentic: bool) -> str:
    parts = []
    if lines:
        parts.append("What you remember about the user (from earlier conversations):\n" + "\n".join(lines))
    if agentic:
        parts.append(AGENTIC_INSTRUCTIONS)
    return "\n\n".join(parts)


def summary_section(summary: str) -> str:
    return f"Summary of the earlier part of this conversation:\n{summary}" if summary else ""


def context_memories(*, agent: Agent, user_id: Any, message: str) -> list[str]:
    """The memory lines for a run's context (sync: called in the run's start-up thread hop)."""
    if agent.memory_mode == "off":
        return []
    memories = memories_for_context(
        user_id=user_id,
        agent_pk=memory_scope_pk(agent),
        message=message,
        limit=agent.memory_context_items,
        max_chars=agent.memory_context_chars,
    )
    return [memory_line(m) for m in memories]


# ---- agentic memory: the tools ------------------------------------------------------------------

memory_tools = ToolRegistry()


async def _apply(run_context: RunContext, operation: MemoryOperation) -> dict[str, int]:
    return await db_call(
        memory_apply,
        user_id=run_context.user_id,
        agent_pk=memory_scope_pk(run_context.agent),
        operations=[operation],
        source=Memory.Source.AGENTIC,
        run_id=run_context.run_id,
    )


async def add_memory(memory: str, run_context: RunContext, topics: list[str] | None = None) -> str:
    """Remember a durable fact about the user for future conversations.

    Args:
        memory: The fact, in one sentence, e.g. "The user is vegetarian."
        topics: A few short topic words, e.g. ["food"].
    """
    done = await _apply(run_context, MemoryOperation(op="add", memory=memory, topics=topics))
    return "Saved." if done["added"] else "Not saved: a memory must be 1 to 2000 characters, with at most 10 topics."


async def update_memory(
    memory_id: str, run_context: RunContext, memory: str | None = None, topics: list[str] | None = None
) -> str:
    """Change a memory that is no longer accurate.

    Args:
        memory_id: The id shown in brackets before the memory.
        memory: The new text of the memory.
        topics: The new topics, replacing the old ones.
    """
    done = await _apply(run_context, MemoryOperation(op="update", memory_id=memory_id, memory=memory, topics=topics))
    return "Updated." if done["updated"] else f"No memory {memory_id} to update (or the new text is invalid)."


async def delete_memory(memory_id: str, run_context: RunContext) -> str:
    """Forget a memory that is no longer true or that the user asks you to forget.

    Args:
        memory_id: The id shown in brackets before the memory.
    """
    done = await _apply(run_context, MemoryOperation(op="delete", memory_id=memory_id))
    return "Deleted." if done["deleted"] else f"No memory {memory_id} to delete."


for _fn in (add_memory, update_memory, delete_memory):
    memory_tools.register(_fn)


# ---- automatic memory: the memory manager ------------------------------------------------------

_MEMORY_OPERATION = object_schema(
    {
        "op": {"type": "string", "enum": ["add", "update", "delete"]},
        "memory_id": {"type": ["string", "null"]},
        "memory": {"type": ["string", "null"]},
        "topics": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
    }
)
MEMORY_UPDATES_SCHEMA = object_schema({"operations": {"type": "array", "maxItems": 20, "items": _MEMORY_OPERATION}})

MEMORY_MANAGER_SYSTEM = (
    "You maintain the memories an assistant keeps about one user across conversations. Given the "
    "existing memories and the latest exchange, list the changes to make:\n"
    '- "add" a durable fact the user revealed about themselves (preferences, personal details, '
    "plans, goals), one fact per memory, in the third person, with one to three short topic words;\n"
    '- "update" a memory (by its id) that the exchange corrects or refines;\n'
    '- "delete" a memory (by its id) that the exchange shows is no longer true.\n'
    "Never store secrets (passwords, keys, card numbers), what the assistant said, or small talk. "
    "Do not repeat a fact that is already remembered. Most exchanges need no change: then return an "
    "empty list of operations."
)


async def memory_manager(ctx: HookContext) -> None:
    """Extract or update the user's memories from the run's exchange."""
    agent = ctx.agent
    scope = memory_scope_pk(agent)
    output = ctx.output if isinstance(ctx.output, str) else json.dumps(ctx.output, ensure_ascii=False)
    existing = await db_call(
        memories_for_context,
        user_id=ctx.user_id,
        agent_pk=scope,
        message=f"{ctx.input}\n{output}",
        limit=50,
        max_chars=12_000,
    )
    known = "\n".join(memory_line(m) for m in existing) or "(none yet)"
    limit = int(agentos_settings.MEMORY_EXCHANGE_MAX_CHARS)
    data = await ask_json(
        await _model_config(agent),
        name="memory_updates",
        schema=MEMORY_UPDATES_SCHEMA,
        system=MEMORY_MANAGER_SYSTEM,
        user=(
            f"Existing memories:\n{known}\n\nThe user's message:\n{ctx.input[:limit]}\n\n"
            f"The assistant's answer:\n{(output or '')[:limit]}"
        ),
    )
    operations = [
        MemoryOperation(op=o["op"], memory_id=o.get("memory_id"), memory=o.get("memory"), topics=o.get("topics"))
        for o in data["operations"]
    ]
    if operations:
        ctx.on_success(
            partial(
                memory_apply,
                user_id=ctx.user_id,
                agent_pk=scope,
                operations=operations,
                source=Memory.Source.AUTOMATIC,
                run_id=ctx.run_id,
            )
        )


# ---- session summaries -------------------------------------------------------------------------

SUMMARY_SCHEMA = object_schema({"summary": {"type": "string"}})

SUMMARY_SYSTEM = (
    "You keep a running summary of a conversation between a user and an assistant, so the assistant "
    "can continue it after the older messages are dropped. Merge the previous summary with the "
    "older messages given: keep the facts, decisions, open questions and what the user wants; drop "
    "pleasantries. Write plain prose, at most {limit} characters."
)


async def session_summarizer(ctx: HookContext) -> None:
    """Fold the runs that left the session's history window into the session's summary."""
    from sessions_app.selectors import session_runs_to_summarize

    agent = ctx.agent
    history_runs = min(agent.history_runs, int(agentos_settings.MAX_HISTORY_RUNS))
    # Inline, this run is not stored yet but will take a place in the next run's window.
    pending = 0 if ctx.background else 1
    todo = await db_call(
        session_runs_to_summarize,
        session_id=ctx.session_id,
        window_runs=max(history_runs - pending, 0),
        max_chars=agent.history_max_chars,
        max_messages=int(agentos_settings.MAX_HISTORY_MESSAGES),
        input_chars=int(agentos_settings.SESSION_SUMMARY_INPUT_MAX_CHARS),
    )
    if todo is None:
        return
    limit = int(agentos_settings.SESSION_SUMMARY_MAX_CHARS)
    data = await ask_json(
        await _model_config(agent),
        name="session_summary",
        schema=SUMMARY_SCHEMA,
        system=SUMMARY_SYSTEM.format(limit=limit),
        user=f"Previous summary:\n{todo.previous or '(none)'}\n\nOlder messages to fold in:\n{todo.transcript}",
    )
    summary = data["summary"].strip()[:limit]
    if summary:
        from sessions_app.services import session_summary_store

        ctx.on_success(partial(session_summary_store, session_id=ctx.session_id, summary=summary, until=todo.until))


_internal = partial(hook_registry.register, background=True, retries=2, timeout=120.0, phases=(POST,), internal=True)
_internal(
    memory_manager,
    name=MEMORY_HOOK,
    description="Automatic memory: extract the user's memories from each completed run.",
)
_internal(
    session_summarizer,
    name=SUMMARY_HOOK,
    description="Session summaries: fold runs that left the history window into the session's summary.",
)


# ---- consolidation (agno's optimize-memories) ----------------------------------------------------

OPTIMIZE_SCHEMA = object_schema(
    {
        "memories": {
            "type": "array",
            "items": object_schema(
                {"memory": {"type": "string"}, "topics": {"type": "array", "items": {"type": "string"}}}
            ),
        }
    }
)

OPTIMIZE_SYSTEM = (
    "You tidy up what an assistant remembers about a user. Given the memories, return a shorter list "
    "that keeps every durable fact: merge duplicates and memories about the same thing into one "
    "sentence, drop what a later memory contradicts or makes obsolete, and keep each memory one short "
    "sentence with a few one-word topics. Never invent a fact."
)

# Memories of one scope sent to the model at most (the oldest beyond are left as they are).
OPTIMIZE_MAX_MEMORIES = 200


def approx_tokens(text: str) -> int:
    """A token count close enough to report savings (about four characters a token), the same for
    any model: agno counts with the model's tokenizer."""
    return (len(text) + 3) // 4


def _scoped_memories(user_id: Any) -> dict[int | None, list[Memory]]:
    scopes: dict[int | None, list[Memory]] = {}
    for memory in Memory.objects.filter(user_id=user_id).order_by("-updated_at")[: OPTIMIZE_MAX_MEMORIES * 5]:
        items = scopes.setdefault(memory.agent_id, [])
        if len(items) < OPTIMIZE_MAX_MEMORIES:
            items.append(memory)
    return scopes


async def memories_optimize(optimization_id: Any) -> str:
    """Do one recorded consolidation (a MemoryOptimization row): for each memory scope of the user
    (their shared memories, and each agent's private ones, never mixed), the model proposes a
    consolidated list as structured output; the result is stored, and applied when asked. Called
    by the Celery task agents_app.memory_optimize; a failure is recorded on the row."""
    from sessions_app.services import (
        memory_optimization_claim,
        memory_optimization_fail,
        memory_optimization_finish,
    )

    row = await db_call(memory_optimization_claim, optimization_id=optimization_id)
    if row is None:
        return "taken"
    try:
        scopes = await db_call(_scoped_memories, row.user_id)
        proposed: dict[int | None, list[dict[str, Any]]] = {}
        # The user's shared memories first, then each agent's private ones (a stable order).
        for scope in sorted(scopes, key=lambda pk: (pk is not None, pk or 0)):
            memories = scopes[scope]
            listed = "\n".join(f"- {m.memory} (topics: {', '.join(m.topics or []) or 'none'})" for m in memories)
            data = await ask_json(
                row.model_config,
                name="memory_optimization",
                schema=OPTIMIZE_SCHEMA,
                system=OPTIMIZE_SYSTEM,
                user=f"The memories:\n{listed}",
            )
            proposed[scope] = [m for m in data["memories"] if str(m.get("memory") or "").strip()]
        before = [m for memories in scopes.values() for m in memories]
        await db_call(
            memory_optimization_finish,
            optimization_id=row.pk,
            scopes=proposed,
            before=before,
            tokens=approx_tokens,
        )
    except Exception as exc:  # noqa: BLE001 (recorded on the row: the caller reads the failure from it)
        logger.warning("Memory optimization %s failed: %s", optimization_id, exc)
        await db_call(memory_optimization_fail, optimization_id=row.pk, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return "completed"


def memory_optimization_publish(optimization_id: Any) -> None:
    """Send the consolidation to a Celery worker (in development, the embedded one: it starts on
    first use). Call after the row is committed."""
    from celery import current_app

    from agents_app.embedded_worker import ensure_embedded_worker

    ensure_embedded_worker(current_app)
    current_app.send_task("agents_app.memory_optimize", (str(optimization_id),))
