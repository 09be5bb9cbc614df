"""Create what a fresh install needs to be tried at once: a demo admin, the offline model, a demo
agent and an API token. Idempotent: running it again changes nothing that exists."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from agents_app.models import Agent, EvalCase, EvalSuite, ModelConfig, Team, TeamMember, Workflow, WorkflowStep
from sessions_app.progress import Progress, progress


class Command(BaseCommand):
    help = "Create a demo admin user (admin/admin unless given), the offline model and a demo agent."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--email", default="admin@example.com")

    def _team_and_workflow(self, model: ModelConfig, agent: Agent, bar: Progress) -> None:
        """A collaborating team and a two-step workflow on the offline model (no tool calls needed)."""
        team, created = Team.objects.get_or_create(
            slug="demo-team",
            defaults={
                "name": "Demo team",
                "description": "Two agents answer at once; the leader combines their answers.",
                "model": model,
                "mode": Team.Mode.COLLABORATE,
                "instructions": "Combine your members' answers into one.",
            },
        )
        if created:
            writer, _ = Agent.objects.get_or_create(
                slug="demo-writer",
                defaults={
                    "name": "Demo writer",
                    "description": "A second offline agent for the demo team: no tools, plain answers.",
                    "model": model,
                    "instructions": "You write short, friendly answers.",
                },
            )
            TeamMember.objects.create(team=team, agent=agent, order=0, role="Calculates, tells the time, counts.")
            TeamMember.objects.create(team=team, agent=writer, order=1, role="Writes a friendly answer.")
            bar.log("Created the demo team 'demo-team' (collaborate mode, two members).")
        bar.advance()
        workflow, created = Workflow.objects.get_or_create(
            slug="demo-workflow",
            defaults={
                "name": "Demo workflow",
                "description": "The demo agent answers; the answer is kept in the state.",
            },
        )
        if created:
            WorkflowStep.objects.create(workflow=workflow, order=0, name="answer", kind="agent", agent=agent)
            WorkflowStep.objects.create(
                workflow=workflow, order=1, name="remember", kind="function", function="remember_output"
            )
            bar.log("Created the demo workflow 'demo-workflow' (an agent step, then a function step).")
        bar.advance()

    def _eval_suite(self, agent: Agent, bar: Progress) -> None:
        """An eval suite on the demo agent that passes on the offline model (docs/evals.md): the
        offline model calls the calculator for arithmetic, and, as the judge, fills the verdict's
        schema (a demo of the machinery, not a measure of quality)."""
        suite, created = EvalSuite.objects.get_or_create(
            slug="demo-evals",
            defaults={"name": "Demo evals", "description": "Runs on the offline model.", "agent": agent},
        )
        if not created:
            bar.advance()
            return
        EvalCase.objects.create(
            suite=suite,
            position=0,
            name="uses the calculator",
            kind=EvalCase.Kind.RELIABILITY,
            input="What is 6*7?",
            expected_tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
        )
        EvalCase.objects.create(
            suite=suite,
            position=1,
            name="answers 42",
            kind=EvalCase.Kind.ACCURACY,
            input="What is 6*7?",
            expected_output="42",
            iterations=2,
        )
        EvalCase.objects.create(
            suite=suite,
            position=2,
            name="is polite",
            kind=EvalCase.Kind.AGENT_AS_JUDGE,
            input="Say hello.",
            criteria="The answer greets the user.",
            scoring=EvalCase.Scoring.BINARY,
        )
        EvalCase.objects.create(
            suite=suite,
            position=3,
            name="answers fast",
            kind=EvalCase.Kind.PERFORMANCE,
            input="hello",
            iterations=5,
            warmup=1,
            threshold=5.0,
        )
        bar.log("Created the eval suite 'demo-evals': manage.py agentos_eval demo-evals")
        bar.advance()

    def handle(self, *args: Any, username: str, password: str, email: str, **options: Any) -> None:
        # Six steps (a progress bar on a terminal; plain lines otherwise, as scripts parse them).
        with progress(self.stdout, "Setting up the demo", total=6) as bar:
            token = self._create(bar, username, password, email)
        self.stdout.write(f"API token for {username!r}: {token.key}")
        self.stdout.write(
            f'Try: curl -H "Authorization: Bearer {token.key}" -H "Content-Type: application/json" '
            '-d \'{"message": "what is 6*7?"}\' http://127.0.0.1:8000/api/agents/demo/runs'
        )

    def _create(self, bar: Progress, username: str, password: str, email: str) -> Token:
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            user = User.objects.create_superuser(username=username, email=email, password=password)
            bar.log(
                f"Created the superuser {username!r} with password {password!r}: change it before exposing this site."
            )
        token, _ = Token.objects.get_or_create(user=user)
        bar.advance()
        model, _ = ModelConfig.objects.get_or_create(
            name="offline",
            defaults={"provider": ModelConfig.Provider.OFFLINE, "model_id": "offline-demo"},
        )
        bar.advance()
        _agent, created = Agent.objects.get_or_create(
            slug="demo",
            defaults={
                "name": "Demo agent",
                "description": (
                    "Answers with the built-in offline model; can calculate, tell the time and count words, "
                    "and remembers what you tell it about yourself."
                ),
                "model": model,
                "instructions": "You are a helpful assistant. Use your tools for arithmetic, time and counting.",
                "tools": ["calculator", "current_time", "text_stats"],
                # Shows memory off the shelf: it remembers what you say about yourself ("My name
                # is...") across sessions, on the embedded worker, and summarizes long sessions.
                "memory_mode": Agent.MemoryMode.AUTOMATIC,
                "session_summaries": True,
                "initial_session_state": {},
            },
        )
        if created:
            bar.log("Created the demo agent 'demo' on the offline model.")
        bar.advance()
        self._team_and_workflow(model, _agent, bar)
        self._eval_suite(_agent, bar)
        return token
