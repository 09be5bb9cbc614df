"""Reads of agents, teams and workflows. Agents are read on every run, so they are cached per process
briefly, with their hook rows: a run plans its hooks from the cached agent without a query. A team's
or workflow's whole configuration is loaded before its run starts, so a run never queries it midway."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch, QuerySet

from agents_app.cache import agent_cache_get, agent_cache_put
from agents_app.models import (
    Agent,
    AgentHook,
    AgentToolRequirement,
    ModelConfig,
    ModelFallback,
    Team,
    TeamMember,
    Workflow,
    WorkflowStep,
    example_prompt_list,
)
from sessions_app.access import ALL, Allowed
from sessions_app.conf import agentos_settings
from sessions_app.errors import NotFoundError


def hooks_prefetch(path: str = "hooks") -> Prefetch:
    """The hook rows of the agents at `path` (e.g. "agent__hooks" from a team member), in run order.
    `agent_hook_rows` reads them; every query that loads an agent for a run prefetches them, so
    planning hooks never queries (a run plans them in async code, where a query would fail)."""
    return Prefetch(path, queryset=AgentHook.objects.order_by("-phase", "position", "pk"))


def fallbacks_prefetch(path: str = "fallbacks") -> Prefetch:
    """The fallback models of the agents or teams at `path`, in order, with their configs: loaded
    with the component, so a run that falls back never queries mid-run."""
    return Prefetch(path, queryset=ModelFallback.objects.select_related("model").order_by("position", "pk"))


def run_prefetches(prefix: str = "") -> list[Prefetch]:
    """What a run of the agents or teams at `prefix` (e.g. "agent__") reads besides their model and
    parser model (select_related): hook rows and fallback models."""
    return [hooks_prefetch(f"{prefix}hooks"), fallbacks_prefetch(f"{prefix}fallbacks")]


def agent_prefetches(prefix: str = "") -> list[Prefetch]:
    """What a run of the agents at `prefix` reads: `run_prefetches`, and their tool-requirement
    overrides (a run decides which tool calls need a person from them, without a query)."""
    return [
        *run_prefetches(prefix),
        Prefetch(f"{prefix}tool_requirements", queryset=AgentToolRequirement.objects.order_by("tool")),
    ]


def fallback_configs(component: Agent | Team) -> list[ModelConfig]:
    """The component's fallback model configs, in order (prefetched by the selectors below)."""
    if component.pk is None:
        return []
    return [row.model for row in component.fallbacks.all()]  # type: ignore[attr-defined]


def agent_hook_rows(agent: Agent) -> list[AgentHook]:
    """The agent's hook rows, pre then post, each in order: the prefetched ones, else (an agent
    loaded some other way, in sync code) one query."""
    if agent.pk is None:
        return []
    return list(agent.hooks.all())


class AgentNotFound(NotFoundError):
    code = "unknown_agent"
    default_detail = "No such agent."


def agent_get_active(*, agent_id: str, allowed: Allowed = ALL) -> Agent:
    """The active agent with its model config and hook rows, from the cache when fresh (zero queries).
    One outside `allowed` (the request's scope, sessions_app.access) does not exist, for the caller."""
    if not allowed.permits("agent", agent_id):
        raise AgentNotFound(f"No active agent with id {agent_id!r}.")
    now = time.monotonic()
    hit = agent_cache_get(agent_id, now)
    if hit is not None:
        return hit
    agent = (
        Agent.objects.select_related("model", "parser_model", "memory_model")
        .prefetch_related(*agent_prefetches())
        .filter(slug=agent_id, is_active=True)
    ).first()
    if agent is None:
        raise AgentNotFound(f"No active agent with id {agent_id!r}.")
    ttl = float(agentos_settings.AGENT_CACHE_SECONDS)
    if ttl > 0:
        agent_cache_put(agent_id, agent, now + ttl)
    return agent


def agent_list_for_user(*, user: Any, allowed: Allowed = ALL) -> QuerySet[Agent]:
    """Staff see every agent (to manage them); everyone else sees active ones; only those `allowed`."""
    qs = (
        Agent.objects.select_related("model", "parser_model")
        .prefetch_related(*agent_prefetches())
        .filter(allowed.component_q("agent"))
    )
    if getattr(user, "is_staff", False):
        return qs.prefetch_related("allowed_users", "allowed_groups")  # staff read who may use each
    return qs.filter(is_active=True)


# ---- Teams and workflows -----------------------------------------------------------------------


class TeamNotFound(NotFoundError):
    code = "unknown_team"
    default_detail = "No such team."


class WorkflowNotFound(NotFoundError):
    code = "unknown_workflow"
    default_detail = "No such workflow."


class MemberTree(dict[int, list[TeamMember]]):
    """The active members by team pk (what runs), and in `every` all member rows by team pk, the
    inactive ones too (what a team's configuration version records, agents_app.versions)."""

    def __init__(self) -> None:
        super().__init__()
        self.every: dict[int, list[TeamMember]] = {}


def team_members_tree(team: Team) -> MemberTree:
    """The active members of the team and of every team inside it, by team pk: one query per level
    (at most the deepest max_depth allows), loaded before the run so it never queries mid-run."""
    tree = MemberTree()
    frontier = {team.pk}
    for _ in range(6):
        frontier -= set(tree)
        if not frontier:
            break
        rows = (
            TeamMember.objects.filter(team_id__in=frontier)
            .select_related(
                "agent__model",
                "agent__parser_model",
                "agent__memory_model",
                "member_team__model",
                "member_team__parser_model",
            )
            .prefetch_related(*agent_prefetches("agent__"), *run_prefetches("member_team__"))
            .order_by("order", "pk")
        )
        for pk in frontier:
            tree[pk] = []
            tree.every[pk] = []
        for row in rows:
            tree.every[row.team_id].append(row)
            if (row.agent_id and row.agent.is_active) or (row.member_team_id and row.member_team.is_active):
                tree[row.team_id].append(row)
        frontier = {m.member_team_id for rows_ in tree.values() for m in rows_ if m.member_team_id}
    return tree


def team_get_active(*, team_id: str, allowed: Allowed = ALL) -> Team:
    if not allowed.permits("team", team_id):
        raise TeamNotFound(f"No active team with id {team_id!r}.")
    team = (
        Team.objects.select_related("model", "parser_model")
        .prefetch_related(*run_prefetches())
        .filter(slug=team_id, is_active=True)
    ).first()
    if team is None:
        raise TeamNotFound(f"No active team with id {team_id!r}.")
    return team


@dataclass(slots=True)
class StepNode:
    step: WorkflowStep
    children: list[StepNode] = field(default_factory=list)


def workflow_get_active(*, workflow_id: str, allowed: Allowed = ALL) -> Workflow:
    if not allowed.permits("workflow", workflow_id):
        raise WorkflowNotFound(f"No active workflow with id {workflow_id!r}.")
    workflow = Workflow.objects.filter(slug=workflow_id, is_active=True).first()
    if workflow is None:
        raise WorkflowNotFound(f"No active workflow with id {workflow_id!r}.")
    return workflow


def workflow_steps_tree(workflow: Workflow) -> tuple[list[StepNode], MemberTree]:
    """The workflow's steps as a tree (one query), and the members of every team its steps run."""
    rows = list(
        WorkflowStep.objects.filter(workflow=workflow)
        .select_related(
            "agent__model", "agent__parser_model", "agent__memory_model", "team__model", "team__parser_model"
        )
        .prefetch_related(*agent_prefetches("agent__"), *run_prefetches("team__"))
        .order_by("order", "pk")
    )
    nodes = {row.pk: StepNode(row) for row in rows}
    top: list[StepNode] = []
    for row in rows:
        parent = nodes.get(row.parent_id) if row.parent_id else None
        (parent.children if parent is not None else top).append(nodes[row.pk])
    members = MemberTree()
    for row in rows:
        if row.team_id and row.team_id not in members:
            tree = team_members_tree(row.team)
            members.update(tree)
            members.every.update(tree.every)
    return top, members


def team_list_for_user(*, user: Any, allowed: Allowed = ALL) -> QuerySet[Team]:
    """Staff see every team; everyone else the active ones; only those `allowed`."""
    members = TeamMember.objects.select_related("agent", "member_team").order_by("order", "pk")
    qs = (
        Team.objects.select_related("model")
        .prefetch_related(Prefetch("memberships", queryset=members))
        .filter(allowed.component_q("team"))
    )
    return qs if getattr(user, "is_staff", False) else qs.filter(is_active=True)


def workflow_list_for_user(*, user: Any, allowed: Allowed = ALL) -> QuerySet[Workflow]:
    """Staff see every workflow; everyone else the active ones; only those `allowed`."""
    steps = WorkflowStep.objects.select_related("agent", "team").order_by("order", "pk")
    qs = Workflow.objects.prefetch_related(Prefetch("steps", queryset=steps)).filter(allowed.component_q("workflow"))
    return qs if getattr(user, "is_staff", False) else qs.filter(is_active=True)


def teams_with_members(*, allowed: Allowed = ALL) -> list[tuple[Team, dict[int, list[TeamMember]]]]:
    """Every active team (`allowed`) with its members' tree (team_members_tree), by slug."""
    teams = Team.objects.select_related("model").filter(allowed.component_q("team"), is_active=True).order_by("slug")
    return [(team, team_members_tree(team)) for team in teams]


def workflows_with_steps(*, allowed: Allowed = ALL) -> list[tuple[Workflow, list[StepNode]]]:
    """Every active workflow (`allowed`) with its steps' tree (workflow_steps_tree), by slug."""
    flows = Workflow.objects.filter(allowed.component_q("workflow"), is_active=True).order_by("slug")
    return [(flow, workflow_steps_tree(flow)[0]) for flow in flows]


# ---- the chat page ----------------------------------------------------------------------------------


def chat_components(*, allowed: Allowed = ALL) -> dict[str, list[dict[str, Any]]]:
    """Every active agent, team and workflow the user may use (`allowed`), by kind, with what the
    page says about each before the first message: its description and example prompts (a list),
    a team's members, a workflow's steps (in order)."""
    agents = list(
        Agent.objects.filter(allowed.component_q("agent"), is_active=True)
        .order_by("name")
        .values("slug", "name", "description", "example_prompts")
    )
    teams = list(
        Team.objects.filter(allowed.component_q("team"), is_active=True)
        .order_by("name")
        .values("id", "slug", "name", "description", "example_prompts")
    )
    members: dict[int, list[str]] = {}
    for m in (
        TeamMember.objects.filter(team__in=[t["id"] for t in teams])
        .select_related("agent", "member_team")
        .order_by("order", "pk")
    ):
        members.setdefault(m.team_id, []).append(m.agent.name if m.agent_id else m.member_team.name)
    flows = list(
        Workflow.objects.filter(allowed.component_q("workflow"), is_active=True)
        .order_by("name")
        .values("id", "slug", "name", "description", "example_prompts")
    )
    steps: dict[int, list[str]] = {}
    for s in WorkflowStep.objects.filter(workflow__in=[w["id"] for w in flows], parent=None).order_by("order", "pk"):
        steps.setdefault(s.workflow_id, []).append(s.name)
    return {
        "agent": [{**_public(a), "parts": []} for a in agents],
        "team": [{**_public(t), "parts": members.get(t["id"], [])} for t in teams],
        "workflow": [{**_public(w), "parts": steps.get(w["id"], [])} for w in flows],
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: row[key] for key in ("slug", "name", "description")},
        "examples": example_prompt_list(row["example_prompts"]),
    }
