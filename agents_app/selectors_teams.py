"""Reads of teams and workflows (the engine loads a run's whole configuration before it starts, so a
run never queries its configuration midway), and the lists users see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch, QuerySet

from agents_app.models import Team, TeamMember, Workflow, WorkflowStep
from agents_app.selectors import hooks_prefetch
from sessions_app.errors import NotFoundError


class TeamNotFound(NotFoundError):
    code = "unknown_team"
    default_detail = "No such team."


class WorkflowNotFound(NotFoundError):
    code = "unknown_workflow"
    default_detail = "No such workflow."


def team_members_tree(team: Team) -> dict[int, list[TeamMember]]:
    """The active members of the team and of every team inside it, by team pk: one query per level
    (at most the deepest max_depth allows), loaded before the run so it never queries mid-run."""
    tree: dict[int, list[TeamMember]] = {}
    frontier = {team.pk}
    for _ in range(6):
        frontier -= set(tree)
        if not frontier:
            break
        rows = (
            TeamMember.objects.filter(team_id__in=frontier)
            .select_related("agent__model", "member_team__model")
            .prefetch_related(hooks_prefetch("agent__hooks"))
            .order_by("order", "pk")
        )
        for pk in frontier:
            tree[pk] = []
        for row in rows:
            if (row.agent_id and row.agent.is_active) or (row.member_team_id and row.member_team.is_active):
                tree[row.team_id].append(row)
        frontier = {m.member_team_id for rows_ in tree.values() for m in rows_ if m.member_team_id}
    return tree


def team_get_active(*, team_id: str) -> Team:
    team = Team.objects.select_related("model").filter(slug=team_id, is_active=True).first()
    if team is None:
        raise TeamNotFound(f"No active team with id {team_id!r}.")
    return team


@dataclass(slots=True)
class StepNode:
    step: WorkflowStep
    children: list[StepNode] = field(default_factory=list)


def workflow_get_active(*, workflow_id: str) -> Workflow:
    workflow = Workflow.objects.filter(slug=workflow_id, is_active=True).first()
    if workflow is None:
        raise WorkflowNotFound(f"No active workflow with id {workflow_id!r}.")
    return workflow


def workflow_steps_tree(workflow: Workflow) -> tuple[list[StepNode], dict[int, list[TeamMember]]]:
    """The workflow's steps as a tree (one query), and the members of every team its steps run."""
    rows = list(
        WorkflowStep.objects.filter(workflow=workflow)
        .select_related("agent__model", "team__model")
        .prefetch_related(hooks_prefetch("agent__hooks"))
        .order_by("order", "pk")
    )
    nodes = {row.pk: StepNode(row) for row in rows}
    top: list[StepNode] = []
    for row in rows:
        parent = nodes.get(row.parent_id) if row.parent_id else None
        (parent.children if parent is not None else top).append(nodes[row.pk])
    members: dict[int, list[TeamMember]] = {}
    for row in rows:
        if row.team_id and row.team_id not in members:
            members.update(team_members_tree(row.team))
    return top, members


def team_list_for_user(*, user: Any) -> QuerySet[Team]:
    """Staff see every team; everyone else the active ones."""
    members = TeamMember.objects.select_related("agent", "member_team").order_by("order", "pk")
    qs = Team.objects.select_related("model").prefetch_related(Prefetch("memberships", queryset=members))
    return qs if getattr(user, "is_staff", False) else qs.filter(is_active=True)


def workflow_list_for_user(*, user: Any) -> QuerySet[Workflow]:
    """Staff see every workflow; everyone else the active ones."""
    steps = WorkflowStep.objects.select_related("agent", "team").order_by("order", "pk")
    qs = Workflow.objects.prefetch_related(Prefetch("steps", queryset=steps))
    return qs if getattr(user, "is_staff", False) else qs.filter(is_active=True)
