"""Versions of what runs: every saved change to an agent, team or workflow becomes an immutable
`ConfigVersion` (number, author, time, a JSON snapshot of the whole configuration), and every run
points at the version it ran with.

Content-addressed: `snapshot(kind, runnable)` is a pure function of the rows that decide what a
run does (the runnable, its model configs, fallbacks, hooks, tool requirements, members, steps);
`record_version` writes a new version only when the snapshot's hash differs from the latest one.
It is called by the edges that save (the admin after its inlines, the staff REST API, restore) and
by every run's start (`version_for_run`), so a change made in a shell or in code still gets a
version before a run uses it. At a run's start the snapshot is built from the rows the run loaded
anyway and compared through a per-process cache of each runnable's latest hash, so the steady
state costs no query.

Secrets never enter a snapshot: a model config's stored API key appears only as a keyed
fingerprint (`set:<12 hex>`), which changes when the key changes and reveals nothing of it.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from agents_app.models import (
    Agent,
    AgentHook,
    AgentToolRequirement,
    ConfigVersion,
    ModelConfig,
    ModelFallback,
    Team,
    TeamMember,
    Workflow,
    WorkflowStep,
)
from agents_app.selectors import MemberTree, StepNode, team_members_tree, workflow_steps_tree
from sessions_app.errors import DomainError, NotFoundError

logger = logging.getLogger(__name__)

KINDS = ("agent", "team", "workflow")
MODELS: dict[str, type[Agent | Team | Workflow]] = {"agent": Agent, "team": Team, "workflow": Workflow}
# Fields of the runnable that are not its configuration: identity, bookkeeping and who may use it
# (restoring a version never renames, (de)activates or re-permissions anything).
_NOT_CONFIG = frozenset({"id", "slug", "created_at", "updated_at", "is_active", "access"})
SNAPSHOT_FORMAT = 1


class UnknownVersion(NotFoundError):
    code = "unknown_version"
    default_detail = "No such version."


class VersionNotRestorable(DomainError):
    code = "version_not_restorable"
    status = 400
    default_detail = "This version cannot be restored."


# ---- the snapshot -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A field's value as JSON that compares equal however the row was loaded (a form's Decimal("1")
    and the database's Decimal("1.000000") are one price)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def _key_marker(key: str) -> str:
    """A stored API key as a snapshot shows it: empty, or a fingerprint keyed by the site's secret
    (an HMAC, so it proves a change without revealing or letting anyone test a guess offline)."""
    if not key:
        return ""
    digest = hmac.new(settings.SECRET_KEY.encode(), b"agentos-version-key:" + str(key).encode(), hashlib.sha256)
    return "set:" + digest.hexdigest()[:12]


def _url_marked(url: str) -> str:
    """A base URL as a snapshot shows it: a password in it (https://user:password@host/v1, how
    some endpoints take their credentials) replaced by the same kind of marker as an API key."""
    userinfo, at, hostport = (url or "").rpartition("@")
    scheme, sep, user_password = userinfo.partition("://")
    if not at or not sep or ":" not in user_password:
        return url
    user, _colon, password = user_password.partition(":")
    return f"{scheme}://{user}:{_key_marker(password)}@{hostport}" if password else url


def _url_password(url: str) -> str:
    userinfo, at, _hostport = (url or "").rpartition("@")
    return userinfo.partition("://")[2].partition(":")[2] if at else ""


def _url_unmarked(marked: str, current: str) -> str:
    """A snapshot's base URL to run with: its password marker replaced by the current row's
    password (passwords are never stored, as keys are not)."""
    if _url_marked(current) == marked:
        return current
    userinfo, at, hostport = marked.rpartition("@")
    scheme, sep, user_password = userinfo.partition("://")
    if not at or not sep or not user_password.partition(":")[2].startswith("set:"):
        return marked
    user = user_password.partition(":")[0]
    password = _url_password(current)
    return f"{scheme}://{user}:{password}@{hostport}" if password else f"{scheme}://{user}@{hostport}"


def model_snapshot(config: ModelConfig | None) -> dict[str, Any] | None:
    """One model config, its key only as a marker."""
    if config is None:
        return None
    data: dict[str, Any] = {"id": config.pk}
    for f in ModelConfig._meta.concrete_fields:
        if f.name in ("id", "created_at", "updated_at"):
            continue
        value = f.value_from_object(config)
        if f.name == "api_key":
            data[f.name] = _key_marker(value)
        elif f.name == "base_url":
            data[f.name] = _url_marked(value)
        else:
            data[f.name] = _plain(value)
    return data


def _fields(obj: Agent | Team | Workflow) -> dict[str, Any]:
    """The runnable's own settings: every concrete field but identity and access; a model config
    foreign key as the model config's snapshot. New fields are versioned without a change here."""
    data: dict[str, Any] = {}
    for f in type(obj)._meta.concrete_fields:
        if f.name in _NOT_CONFIG:
            continue
        if f.is_relation:
            data[f.name] = model_snapshot(getattr(obj, f.name))
        else:
            data[f.name] = _plain(f.value_from_object(obj))
    return data


def _hooks(rows: list[AgentHook]) -> list[dict[str, Any]]:
    return [
        {
            "phase": h.phase,
            "position": h.position,
            "hook": h.hook,
            "mode": h.mode,
            "max_retries": h.max_retries,
            "timeout_seconds": h.timeout_seconds,
        }
        for h in sorted(rows, key=lambda h: (h.phase != "pre", h.position, h.hook))
    ]


def _fallbacks(rows: list[ModelFallback]) -> list[dict[str, Any] | None]:
    return [model_snapshot(row.model) for row in sorted(rows, key=lambda r: (r.position, r.pk or 0))]


def _ref(obj: Any) -> dict[str, Any] | None:
    return None if obj is None else {"id": obj.pk, "slug": obj.slug}


def agent_snapshot(agent: Agent) -> dict[str, Any]:
    """An agent with what its run reads: the rows `agent_get_active` loads (no query then)."""
    requirements: list[AgentToolRequirement] = list(agent.tool_requirements.all())  # type: ignore[attr-defined]
    return {
        **_fields(agent),
        "fallbacks": _fallbacks(list(agent.fallbacks.all())),  # type: ignore[attr-defined]
        "hooks": _hooks(list(agent.hooks.all())),  # type: ignore[attr-defined]
        "tool_requirements": [
            {"tool": r.tool, "requirement": r.requirement, "user_input_fields": list(r.user_input_fields or [])}
            for r in sorted(requirements, key=lambda r: r.tool)
        ],
    }


def team_snapshot(team: Team, members: MemberTree) -> dict[str, Any]:
    """A team, with its member rows (all, each marked active or not) from `team_members_tree`."""
    rows = members.every.get(team.pk, []) if isinstance(members, MemberTree) else members.get(team.pk, [])
    return {
        **_fields(team),
        "fallbacks": _fallbacks(list(team.fallbacks.all())),  # type: ignore[attr-defined]
        "hooks": _hooks(list(team.hooks.all())),  # type: ignore[attr-defined]
        "members": [
            {
                "order": m.order,
                "agent": _ref(m.agent) if m.agent_id else None,
                "team": _ref(m.member_team) if m.member_team_id else None,
                "role": m.role,
                "active": bool((m.agent or m.member_team).is_active),  # type: ignore[union-attr]
            }
            for m in sorted(rows, key=lambda m: (m.order, m.pk))
        ],
    }


def _step(node: StepNode) -> dict[str, Any]:
    s = node.step
    return {
        "order": s.order,
        "name": s.name,
        "kind": s.kind,
        "agent": _ref(s.agent) if s.agent_id else None,
        "team": _ref(s.team) if s.team_id else None,
        "function": s.function,
        "args": s.args,
        "steps": [_step(child) for child in node.children],
    }


def workflow_snapshot(workflow: Workflow, steps: list[StepNode]) -> dict[str, Any]:
    """A workflow, with its steps as a tree (`workflow_steps_tree`)."""
    return {**_fields(workflow), "steps": [_step(node) for node in steps]}


def snapshot(kind: str, runnable: Any) -> dict[str, Any]:
    """The whole configuration of a runnable as stored now (reads what it needs: a few queries)."""
    if kind == "agent":
        fresh = (
            Agent.objects.select_related("model", "parser_model", "memory_model")
            .prefetch_related("hooks", "tool_requirements", "fallbacks__model")
            .get(pk=runnable.pk)
        )
        return agent_snapshot(fresh)
    if kind == "team":
        team = Team.objects.select_related("model", "parser_model").prefetch_related("hooks", "fallbacks__model")
        fresh_team = team.get(pk=runnable.pk)
        return team_snapshot(fresh_team, team_members_tree(fresh_team))
    if kind == "workflow":
        fresh_flow = Workflow.objects.get(pk=runnable.pk)
        return workflow_snapshot(fresh_flow, workflow_steps_tree(fresh_flow)[0])
    raise ValueError(f"Not a kind of runnable: {kind!r}")


def snapshot_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- recording ----------------------------------------------------------------------------------

# (kind, runnable pk) -> (hash, version pk, number) of the latest version this process knows.
_latest: dict[tuple[str, int], tuple[str, int, int]] = {}
_lock = threading.Lock()


def versions_cache_clear() -> None:
    """Forget the latest versions this process knows (tests; the next run start reads them again)."""
    with _lock:
        _latest.clear()


def _remember(key: tuple[str, int], value: tuple[str, int, int]) -> None:
    """Cache a version once it is sure to exist: now if no transaction is open (or only a test's),
    else when the transaction commits (a rolled-back version must not be pointed at later)."""

    def put() -> None:
        with _lock:
            _latest[key] = value

    connection = transaction.get_connection()
    if not connection.in_atomic_block or all(getattr(b, "_from_testcase", False) for b in connection.atomic_blocks):
        put()
    else:
        transaction.on_commit(put)


def _record(
    kind: str,
    runnable: Any,
    data: dict[str, Any],
    digest: str,
    *,
    author: Any = None,
    source: str,
    restored_from: int | None = None,
) -> tuple[ConfigVersion | None, int, int]:
    """The latest version if its hash is `digest`, else a new one. Returns (the new version or
    None, its pk, its number). Two processes recording at once: the unique number decides, the
    loser reads the winner's."""
    key = (kind, runnable.pk)
    for _attempt in range(3):
        latest = (
            ConfigVersion.objects.filter(**{kind: runnable.pk})
            .order_by("-number")
            .values_list("pk", "number", "snapshot_hash")
            .first()
        )
        if latest is not None and latest[2] == digest and restored_from is None:
            _remember(key, (digest, latest[0], latest[1]))
            return None, latest[0], latest[1]
        number = (latest[1] if latest is not None else 0) + 1
        try:
            with transaction.atomic():
                version = ConfigVersion.objects.create(
                    kind=kind,
                    **{kind: runnable},
                    number=number,
                    snapshot={"format": SNAPSHOT_FORMAT, "kind": kind, "slug": runnable.slug, "config": data},
                    snapshot_hash=digest,
                    author=author if getattr(author, "is_authenticated", False) else None,
                    source=source,
                    restored_from=restored_from,
                )
        except IntegrityError:
            continue
        _remember(key, (digest, version.pk, number))
        logger.info("Recorded %s %s version %s (%s)", kind, runnable.slug, number, source)
        return version, version.pk, number
    raise RuntimeError(f"Could not record a version of {kind} {runnable.slug!r}: too many concurrent writers.")


def record_version(
    runnable: Agent | Team | Workflow, *, author: Any = None, source: str = ConfigVersion.Source.ADMIN
) -> ConfigVersion | None:
    """Record the runnable's configuration as a new version if it changed since the latest one;
    the new version, or None when nothing changed. Call after every related row is saved (the
    admin's `save_related`)."""
    kind = kind_of(runnable)
    data = snapshot(kind, runnable)
    version, _pk, _number = _record(kind, runnable, data, snapshot_hash(data), author=author, source=source)
    return version


def version_for_run(
    kind: str, runnable: Any, *, members: MemberTree | None = None, steps: Any = None
) -> tuple[int, int]:
    """(version pk, number) of the configuration a run is about to use, from the rows it loaded
    (an agent with `agent_get_active`'s prefetches, a team with its `members` tree, a workflow
    with its `steps`): no query when this process already knows that version; else it records
    one (source "run": the configuration changed without an edge that records versions)."""
    known = _latest.get((kind, runnable.pk))
    # An agent from the per-process cache is the same object run after run (never changed in
    # place; a save replaces it): its digest is computed once per cache fill, not per run.
    memo = runnable.__dict__.get("_agentos_config_digest")
    if memo is not None and known is not None and known[0] == memo:
        return known[1], known[2]
    if kind == "agent":
        data = agent_snapshot(runnable)
    elif kind == "team":
        data = team_snapshot(runnable, members if members is not None else MemberTree())
    else:
        data = workflow_snapshot(runnable, steps or [])
    digest = snapshot_hash(data)
    if kind == "agent":
        runnable.__dict__["_agentos_config_digest"] = digest
    if known is not None and known[0] == digest:
        return known[1], known[2]
    _version, pk, number = _record(kind, runnable, data, digest, source=ConfigVersion.Source.RUN)
    return pk, number


def kind_of(runnable: Any) -> str:
    for kind, model in MODELS.items():
        if isinstance(runnable, model):
            return kind
    raise ValueError(f"Not a runnable: {runnable!r}")


def record_dependents(config: ModelConfig, *, author: Any = None, source: str = ConfigVersion.Source.ADMIN) -> int:
    """A model config changed: record a version of every agent and team that uses it (as its model,
    parser, memory or fallback model). Returns how many got one."""
    agent_q = (
        Agent.objects.filter(model=config)
        | Agent.objects.filter(parser_model=config)
        | Agent.objects.filter(memory_model=config)
        | Agent.objects.filter(fallbacks__model=config)
    )
    team_q = (
        Team.objects.filter(model=config)
        | Team.objects.filter(parser_model=config)
        | Team.objects.filter(fallbacks__model=config)
    )
    count = 0
    for runnable in [*agent_q.distinct(), *team_q.distinct()]:
        count += record_version(runnable, author=author, source=source) is not None
    return count


# ---- reading ------------------------------------------------------------------------------------


def versions_of(kind: str, runnable_id: int) -> Any:
    """The runnable's versions, newest first, with their authors."""
    return ConfigVersion.objects.filter(kind=kind, **{f"{kind}_id": runnable_id}).select_related("author")


def get_version(kind: str, runnable_id: int, number: int) -> ConfigVersion:
    """Version `number` of the runnable (UnknownVersion if there is none): what an eval pinned to a
    version reads."""
    if kind not in KINDS:
        raise UnknownVersion(f"No kind of runnable {kind!r}.")
    version = versions_of(kind, runnable_id).filter(number=number).first()
    if version is None:
        # Named by its slug (the id clients know), not the database's key.
        slug = MODELS[kind].objects.filter(pk=runnable_id).values_list("slug", flat=True).first()
        raise UnknownVersion(f"No version {number} of {kind} {slug or runnable_id!r}.")
    return version


def previous_version(version: ConfigVersion) -> ConfigVersion | None:
    return versions_of(version.kind, version.runnable_id).filter(number__lt=version.number).order_by("-number").first()


def pretty(version: ConfigVersion | None) -> str:
    if version is None:
        return ""
    return json.dumps(version.snapshot.get("config", {}), indent=2, sort_keys=True, ensure_ascii=False, default=str)


def diff_lines(old: ConfigVersion | None, new: ConfigVersion) -> list[str]:
    """A unified diff of the two versions' pretty JSON (empty old: everything added)."""
    before = pretty(old).splitlines()
    after = pretty(new).splitlines()
    old_name = f"version {old.number}" if old is not None else "nothing"
    return list(
        difflib.unified_diff(before, after, fromfile=old_name, tofile=f"version {new.number}", lineterm="", n=3)
    )


def diff_html(old: ConfigVersion | None, new: ConfigVersion) -> SafeString:
    """The diff as HTML: each line escaped, added and removed lines marked by class."""
    out = []
    for line in diff_lines(old, new):
        css = ""
        if line.startswith(("+++", "---")):
            css = "file"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        out.append(f'<span class="{css}">{escape(line)}</span>' if css else escape(line))
    return mark_safe("\n".join(out))  # every line is escaped above


# ---- restoring ----------------------------------------------------------------------------------


def _row_or_error(model: type[Any], ref: dict[str, Any] | None, gone: Callable[[dict[str, Any]], str]) -> Any:
    """The live row a snapshot `ref` names (None for no ref); a row since deleted refuses the
    restore, in the words `gone(ref)` gives."""
    if ref is None:
        return None
    row = model.objects.filter(pk=ref.get("id")).first()
    if row is None:
        raise VersionNotRestorable(gone(ref))
    return row


def _model_or_error(ref: dict[str, Any] | None, what: str) -> ModelConfig | None:
    return _row_or_error(ModelConfig, ref, lambda r: f"Its {what} (model config {r.get('name')!r}) no longer exists.")


def _runnable_or_error(model: type[Agent | Team], ref: dict[str, Any] | None, what: str) -> Any:
    return _row_or_error(model, ref, lambda r: f"Its {what} {r.get('slug')!r} no longer exists.")


def _set_fields(obj: Any, config: dict[str, Any], relation: Callable[[str, Any], Any]) -> None:
    """Set `obj`'s configuration fields from a version's snapshot: plain values as stored, each
    relation (a model config) as `relation(field name, its snapshot ref)` resolves it."""
    for f in type(obj)._meta.concrete_fields:
        if f.name in _NOT_CONFIG or f.name not in config:
            continue
        if f.is_relation:
            setattr(obj, f.name, relation(f.name, config[f.name]))
        else:
            _set_value(obj, f, config[f.name])


def _set_value(obj: Any, field: Any, value: Any) -> None:
    setattr(obj, field.attname, field.to_python(value) if value is not None else None)


def _apply_fields(obj: Any, config: dict[str, Any]) -> None:
    """For a restore: a relation whose row is gone refuses it (VersionNotRestorable)."""
    _set_fields(obj, config, lambda name, ref: _model_or_error(ref, name.replace("_", " ")))


def restore_version(version: ConfigVersion, *, author: Any = None) -> ConfigVersion:
    """Write the version's configuration back to the rows (one transaction) and record the result
    as a new version (source "restore"). Model configs are shared rows: the runnable points at the
    same ones again, their own settings are not rewound (the new version shows any difference)."""
    from agents_app.cache import agent_cache_clear
    from agents_app.services import fallbacks_replace, tool_requirements_replace

    config = version.snapshot.get("config") or {}
    runnable = version.runnable
    with transaction.atomic():
        _apply_fields(runnable, config)
        try:
            runnable.full_clean(exclude=["slug", "allowed_users", "allowed_groups"], validate_unique=False)
        except ValidationError as exc:
            raise VersionNotRestorable(f"Its settings are no longer valid: {'; '.join(exc.messages)}") from None
        runnable.save()
        if version.kind in ("agent", "team"):
            fallbacks_replace(
                owner=runnable,
                models=[m for m in (_model_or_error(r, "fallback model") for r in config.get("fallbacks", [])) if m],
            )
            # The rows as they were, positions included (so the restored snapshot is the version's).
            owner = {version.kind: runnable}
            AgentHook.objects.filter(**owner).delete()
            AgentHook.objects.bulk_create([AgentHook(**owner, **h) for h in config.get("hooks", [])])
            agent_cache_clear()  # a bulk write skips AgentHook.save
        if version.kind == "agent":
            tool_requirements_replace(agent=runnable, rows=config.get("tool_requirements", []))
        if version.kind == "team":
            TeamMember.objects.filter(team=runnable).delete()
            for m in config.get("members", []):
                _checked_save(
                    TeamMember(
                        team=runnable,
                        order=m["order"],
                        role=m.get("role", ""),
                        agent=_runnable_or_error(Agent, m.get("agent"), "member agent"),
                        member_team=_runnable_or_error(Team, m.get("team"), "member team"),
                    )
                )
        if version.kind == "workflow":
            WorkflowStep.objects.filter(workflow=runnable).delete()
            _restore_steps(runnable, config.get("steps", []), parent=None)
        data = snapshot(version.kind, runnable)
        new, _pk, _number = _record(
            version.kind,
            runnable,
            data,
            snapshot_hash(data),
            author=author,
            source=ConfigVersion.Source.RESTORE,
            restored_from=version.number,
        )
    assert new is not None
    return new


def _checked_save(row: TeamMember | WorkflowStep) -> None:
    """Save a member or step row written back by a restore, checked as the admin checks it (what
    was valid then may not be now: a team that would loop, a step function no longer registered)."""
    try:
        row.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise VersionNotRestorable(
            f"Its {row._meta.verbose_name} {row} is no longer valid: {'; '.join(exc.messages)}"
        ) from None
    row.save()


def _step_row(
    workflow: Workflow, parent: WorkflowStep | None, s: dict[str, Any], *, agent: Any, team: Any
) -> WorkflowStep:
    """An unsaved step from a version's snapshot `s`; its agent and team are resolved by the caller
    (a restore refuses a missing one, a run as the version takes the live row)."""
    return WorkflowStep(
        workflow=workflow,
        parent=parent,
        order=s["order"],
        name=s["name"],
        kind=s["kind"],
        agent=agent,
        team=team,
        function=s.get("function", ""),
        args=s.get("args") or {},
    )


def _restore_steps(workflow: Workflow, steps: list[dict[str, Any]], *, parent: WorkflowStep | None) -> None:
    for s in steps:
        row = _step_row(
            workflow,
            parent,
            s,
            agent=_runnable_or_error(Agent, s.get("agent"), "step agent"),
            team=_runnable_or_error(Team, s.get("team"), "step team"),
        )
        _checked_save(row)
        _restore_steps(workflow, s.get("steps", []), parent=row)


# ---- running a version ----------------------------------------------------------------------------


class VersionNotRunnable(DomainError):
    code = "version_not_runnable"
    status = 400
    default_detail = "This version cannot be run."


def _model_at(ref: dict[str, Any] | None) -> ModelConfig | None:
    """A model config as the version saw it: its snapshot's settings on the current row (keys are
    never stored: the run uses the row's current key, or the snapshot's environment variable)."""
    if ref is None:
        return None
    current = ModelConfig.objects.filter(pk=ref.get("id")).first()
    config = ModelConfig(pk=ref.get("id"))
    for f in ModelConfig._meta.concrete_fields:
        if f.name in ("id", "created_at", "updated_at"):
            continue
        if f.name == "api_key":
            config.api_key = current.api_key if current is not None else ""
        elif f.name == "base_url" and f.name in ref:
            config.base_url = _url_unmarked(ref[f.name] or "", current.base_url if current is not None else "")
        elif f.name in ref:
            _set_value(config, f, ref[f.name])
    return config


def _fill(obj: Any, config: dict[str, Any]) -> None:
    """For a run as the version: a relation is the model config as the version saw it."""
    _set_fields(obj, config, lambda name, ref: _model_at(ref))


def _prefetched(obj: Any, name: str, model: type, rows: list[Any]) -> None:
    """Hand `obj.<name>.all()` these unsaved rows, as a prefetch would (so a run reads no row)."""
    qs = model.objects.none()
    qs._result_cache = rows
    qs._prefetch_done = True
    obj.__dict__.setdefault("_prefetched_objects_cache", {})[name] = qs


def _copy_identity(model: type, current: Any) -> Any:
    """A new instance with the current row's identity (pk, slug, access, active), nothing cached."""
    return model(**{f.attname: getattr(current, f.attname) for f in model._meta.concrete_fields})


def _owned_rows(owner: Any, owner_field: str, config: dict[str, Any]) -> None:
    fallbacks = [
        ModelFallback(**{owner_field: owner}, model=_model_at(ref), position=i)
        for i, ref in enumerate(config.get("fallbacks", []))
    ]
    _prefetched(owner, "fallbacks", ModelFallback, fallbacks)
    hooks = [AgentHook(**{owner_field: owner}, **h) for h in config.get("hooks", [])]
    _prefetched(owner, "hooks", AgentHook, hooks)


def materialize_agent(version: ConfigVersion, current: Agent) -> Agent:
    """The agent as version `version` configured it, identity from `current` (the active row),
    with its hooks, fallbacks and tool requirements in place: what `run_prepare` runs when pinned."""
    config = version.snapshot.get("config") or {}
    agent = _copy_identity(Agent, current)
    _fill(agent, config)
    _owned_rows(agent, "agent", config)
    requirements = [AgentToolRequirement(agent=agent, **r) for r in config.get("tool_requirements", [])]
    _prefetched(agent, "tool_requirements", AgentToolRequirement, requirements)
    return agent


def _live_agents(pks: set[int]) -> dict[int, Agent]:
    from agents_app.selectors import agent_prefetches

    rows = Agent.objects.select_related("model", "parser_model", "memory_model").prefetch_related(*agent_prefetches())
    return {a.pk: a for a in rows.filter(pk__in=pks, is_active=True)}


def _live_teams(pks: set[int]) -> tuple[dict[int, Team], MemberTree]:
    from agents_app.selectors import run_prefetches

    teams = {
        t.pk: t
        for t in Team.objects.select_related("model", "parser_model")
        .prefetch_related(*run_prefetches())
        .filter(pk__in=pks, is_active=True)
    }
    members = MemberTree()
    for team in teams.values():
        tree = team_members_tree(team)
        members.update(tree)
        members.every.update(tree.every)
    return teams, members


def materialize_team(version: ConfigVersion, current: Team) -> tuple[Team, MemberTree]:
    """The team as `version` configured it (its own settings, hooks, fallbacks and member list);
    its members run as they are configured now (each records its own version)."""
    config = version.snapshot.get("config") or {}
    team = _copy_identity(Team, current)
    _fill(team, config)
    _owned_rows(team, "team", config)
    refs = [m for m in config.get("members", [])]
    agents = _live_agents({m["agent"]["id"] for m in refs if m.get("agent")})
    teams, members = _live_teams({m["team"]["id"] for m in refs if m.get("team")})
    rows = []
    for m in refs:
        agent = agents.get(m["agent"]["id"]) if m.get("agent") else None
        member_team = teams.get(m["team"]["id"]) if m.get("team") else None
        if agent is None and member_team is None:
            continue  # gone or inactive now: not a member this run can use
        rows.append(TeamMember(team=team, agent=agent, member_team=member_team, order=m["order"], role=m["role"]))
    members[team.pk] = rows
    members.every[team.pk] = rows
    return team, members


def materialize_workflow(version: ConfigVersion, current: Workflow) -> tuple[Workflow, list[StepNode], MemberTree]:
    """The workflow as `version` configured it: its settings and its steps (the agents and teams
    they run as configured now)."""
    config = version.snapshot.get("config") or {}
    workflow = _copy_identity(Workflow, current)
    _fill(workflow, config)
    flat: list[dict[str, Any]] = []

    def walk(steps: list[dict[str, Any]]) -> None:
        for s in steps:
            flat.append(s)
            walk(s.get("steps", []))

    walk(config.get("steps", []))
    agents = _live_agents({s["agent"]["id"] for s in flat if s.get("agent")})
    teams, members = _live_teams({s["team"]["id"] for s in flat if s.get("team")})

    def nodes(steps: list[dict[str, Any]], parent: WorkflowStep | None) -> list[StepNode]:
        out = []
        for s in steps:
            row = _step_row(
                workflow,
                parent,
                s,
                agent=agents.get(s["agent"]["id"]) if s.get("agent") else None,
                team=teams.get(s["team"]["id"]) if s.get("team") else None,
            )
            node = StepNode(row)
            node.children = nodes(s.get("steps", []), row)
            out.append(node)
        return out

    return workflow, nodes(config.get("steps", []), None), members


def materialize(version: ConfigVersion) -> Any:
    """The runnable as `version` configured it (unsaved; nothing is written): an Agent, or a
    (Team, members) or (Workflow, steps, members) tuple, as the kinds' `prepare` functions run them."""
    current = version.runnable
    if version.kind == "agent":
        return materialize_agent(version, current)
    if version.kind == "team":
        return materialize_team(version, current)
    return materialize_workflow(version, current)


def pinned(kind: str, component: Any, number: int) -> ConfigVersion:
    """Version `number` of the active runnable `component`, for a run pinned to it (UnknownVersion)."""
    return get_version(kind, component.pk, number)
